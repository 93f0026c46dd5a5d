"""The enrolled GNSS receiver reaches the verifier only inside the registrar's signed statement:
a receiver added, changed or dropped on the wire is refused, and a statement signed before the
field existed still verifies for a record without it (version skew)."""

from __future__ import annotations

import hashlib
import json

import pytest

from geoattest.errors import RegistrarAnswerInvalid
from geoattest.identity_statement import statement_body
from geoattest.wire import GnssReceiverWire, receiver_canonical
from geofence import GnssReceiver, SourceKind
from tests.support.software_pki import SoftwareCa, make_ca
from tests.support.software_tpm import SoftwareTpm
from tests.unit.verifier.core.test_identity import NOW, Registrar, _check, _trust
from verifier.core.identity import check_identity, enrolled_receiver, facts_of

NAVILOCK = GnssReceiverWire(
    source="serial",
    texts=["HW UBX-M80xx 00080000", "PROTVER 15.00"],
    device="/dev/ttyACM0",
)
OTHER = GnssReceiverWire(source="serial", texts=["HW UBX-G70xx 00070000"])


@pytest.fixture
def ca() -> SoftwareCa:
    return make_ca()


@pytest.fixture
def registrar() -> Registrar:
    return Registrar()


def test_the_signed_receiver_is_what_the_verifier_compares_with(
    ca: SoftwareCa,
    registrar: Registrar,
) -> None:
    view = registrar.view(SoftwareTpm(ca), gnss_receiver=NAVILOCK)
    assert view.identity_statement is not None
    assert b"gnss_receiver_sha256" in view.identity_statement
    checked = check_identity(view, _trust(ca, registrar), asked_for="edge", now=NOW)
    assert checked.gnss_receiver == receiver_canonical(NAVILOCK)
    receiver = enrolled_receiver(checked.gnss_receiver)
    assert receiver == GnssReceiver(
        source=SourceKind.SERIAL, texts=tuple(NAVILOCK.texts), device="/dev/ttyACM0"
    )


def test_a_statement_from_before_the_field_still_verifies(
    ca: SoftwareCa,
    registrar: Registrar,
) -> None:
    """An older registrar (or an agent that enrolled no receiver): the field is omitted."""
    view = registrar.view(SoftwareTpm(ca))
    assert view.identity_statement is not None
    assert "gnss_receiver_sha256" not in json.loads(view.identity_statement)
    checked = check_identity(view, _trust(ca, registrar), asked_for="edge", now=NOW)
    assert checked.gnss_receiver is None


def test_a_receiver_added_to_a_statement_without_one_is_refused(
    ca: SoftwareCa,
    registrar: Registrar,
) -> None:
    """Attack: an on-path party claims a receiver the registrar never signed (so that the
    verifier would accept its own receiver as the enrolled one)."""
    view = registrar.view(SoftwareTpm(ca))
    forged = view.model_copy(update={"gnss_receiver": OTHER})
    with pytest.raises(RegistrarAnswerInvalid, match="gnss_receiver_sha256"):
        _check(forged, ca, registrar)


def test_a_receiver_swapped_or_dropped_on_the_wire_is_refused(
    ca: SoftwareCa,
    registrar: Registrar,
) -> None:
    view = registrar.view(SoftwareTpm(ca), gnss_receiver=NAVILOCK)
    for changed in (OTHER, NAVILOCK.model_copy(update={"device": "/dev/ttyUSB9"}), None):
        forged = view.model_copy(update={"gnss_receiver": changed})
        with pytest.raises(RegistrarAnswerInvalid, match="gnss_receiver_sha256"):
            _check(forged, ca, registrar)


def test_the_statement_names_the_receiver_by_its_canonical_digest(
    ca: SoftwareCa,
    registrar: Registrar,
) -> None:
    view = registrar.view(SoftwareTpm(ca), gnss_receiver=NAVILOCK)
    body = json.loads(
        statement_body(facts_of(view), registrar_key="k", issued_at=NOW).decode("utf-8")
    )
    canonical = b'{"device":"/dev/ttyACM0","source":"serial","texts":["HW UBX-M80xx 00080000",'
    canonical += b'"PROTVER 15.00"]}'
    assert body["gnss_receiver_sha256"] == hashlib.sha256(canonical).hexdigest()
