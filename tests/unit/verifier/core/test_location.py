"""``verifier.core.location.check_location``: each attack fails if its check is removed.

Fixes are real (the u-blox NEO-M9N capture, Novato CA, and the NaviLock capture, Black Forest)
and zones are the real Natural Earth countries. The location key here is a software key standing
in for the registered TPM key (the TPM side is in tests/integration/test_location_evidence.py).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import os

import pytest
import shapely
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

from geoattest.errors import (
    LocationEvidenceInvalid,
    LocationImplausible,
    LocationMissing,
    LocationNonceMismatch,
    LocationOutsideZone,
    LocationStale,
    PolicyInvalid,
)
from geofence import (
    Fix,
    LocationEvidence,
    LocationPolicy,
    SourceKind,
    ZoneDecision,
    ZoneSet,
    decode_evidence,
    encode_evidence,
    load_zones,
)
from tests.paths import vector
from tests.unit.geofence.captures import fixes
from tpm import TpmPublic, TpmSignature, encode_tpmt_signature, location_key_public
from verifier.core.location import (
    LocationRoundPolicy,
    check_location,
    fix_from_evidence,
    location_policy_from_mapping,
)

NONCE = bytes.fromhex("6a" * 32)


@functools.cache
def countries() -> ZoneSet:
    text = vector("zones/ne_110m_admin_0_countries.geojson").read_text(encoding="utf-8")
    return load_zones(text, repair=True)  # Sudan is the one invalid polygon


@dataclasses.dataclass
class SoftKey:
    private: ec.EllipticCurvePrivateKey
    public: TpmPublic

    @classmethod
    def new(cls) -> SoftKey:
        private = ec.generate_private_key(ec.SECP256R1())
        return cls(private=private, public=location_key_public(private.public_key()))

    def sign(self, message: bytes) -> bytes:
        der = self.private.sign(message, ec.ECDSA(hashes.SHA256()))
        return encode_tpmt_signature(TpmSignature.ecdsa_from_der(der))


@pytest.fixture(scope="module")
def key() -> SoftKey:
    return SoftKey.new()


def usa() -> LocationRoundPolicy:
    return LocationRoundPolicy(thresholds=LocationPolicy(), zones=countries(), zone_ids=("USA",))


def novato(index: int = 5) -> Fix:
    return fixes("ublox-neo-m9n-nmea.log")[index]


def signed(
    fix: Fix, key: SoftKey, nonce: bytes = NONCE, source: SourceKind = SourceKind.SERIAL
) -> tuple[bytes, bytes]:
    evidence = encode_evidence(LocationEvidence.from_fix(fix, nonce=nonce, source=source))
    return evidence, key.sign(evidence)


def check(
    fix: Fix,
    key: SoftKey,
    *,
    policy: LocationRoundPolicy | None = None,
    track: tuple[Fix, ...] = (),
    nonce: bytes = NONCE,
    age_s: float = 1.0,
) -> ZoneDecision:
    evidence, signature = signed(fix, key)
    assert fix.utc is not None
    verdict = check_location(
        evidence=evidence,
        signature=signature,
        location_key=key.public,
        nonce=nonce,
        policy=policy or usa(),
        track=track,
        now=fix.utc + dt.timedelta(seconds=age_s),
    )
    return verdict.decision


def test_genuine_fix_inside_the_zone_passes(key: SoftKey) -> None:
    fix = novato()
    evidence, signature = signed(fix, key)
    assert fix.utc is not None
    verdict = check_location(
        evidence=evidence,
        signature=signature,
        location_key=key.public,
        nonce=NONCE,
        policy=usa(),
        track=novato_track(),
        now=fix.utc + dt.timedelta(seconds=1),
    )
    assert verdict.decision is ZoneDecision.INSIDE
    assert verdict.zone_id == "USA"
    assert verdict.distance_m > 10_000
    assert verdict.fix.nmea_digest == fix.nmea_digest
    assert (verdict.fix.latitude, verdict.fix.longitude) == pytest.approx(
        (fix.latitude, fix.longitude), abs=1e-9
    )


def novato_track() -> tuple[Fix, ...]:
    """Earlier fixes as the verifier keeps them: decoded from evidence of earlier rounds."""
    return tuple(
        fix_from_evidence(
            LocationEvidence.from_fix(f, nonce=os.urandom(32), source=SourceKind.SERIAL)
        )
        for f in fixes("ublox-neo-m9n-nmea.log")[:5]
    )


def test_evidence_signed_by_another_key_is_refused(key: SoftKey) -> None:
    """Attack: evidence made and signed outside the TPM (any key but the registered one)."""
    fix = novato()
    evidence, _ = signed(fix, key)
    forged = SoftKey.new().sign(evidence)
    assert fix.utc is not None
    with pytest.raises(LocationEvidenceInvalid, match="not signed by the agent's location key"):
        check_location(
            evidence=evidence,
            signature=forged,
            location_key=key.public,
            nonce=NONCE,
            policy=usa(),
            track=(),
            now=fix.utc,
        )


def test_evidence_edited_after_signing_is_refused(key: SoftKey) -> None:
    fix = novato()
    evidence, signature = signed(fix, key)
    moved = evidence.replace(b'"latitude":38.', b'"latitude":39.')
    assert moved != evidence
    assert fix.utc is not None
    with pytest.raises(LocationEvidenceInvalid):
        check_location(
            evidence=moved,
            signature=signature,
            location_key=key.public,
            nonce=NONCE,
            policy=usa(),
            track=(),
            now=fix.utc,
        )


def test_missing_evidence_or_signature_is_refused(key: SoftKey) -> None:
    fix = novato()
    evidence, signature = signed(fix, key)
    assert fix.utc is not None
    for ev, sig in ((None, signature), (evidence, None)):
        with pytest.raises(LocationMissing):
            check_location(
                evidence=ev,
                signature=sig,
                location_key=key.public,
                nonce=NONCE,
                policy=usa(),
                track=(),
                now=fix.utc,
            )


def test_replayed_evidence_with_an_old_nonce_is_refused(key: SoftKey) -> None:
    """Attack: genuine, correctly signed evidence from an earlier round sent again."""
    with pytest.raises(LocationNonceMismatch, match="replayed"):
        check(novato(), key, nonce=bytes.fromhex("11" * 32))


def test_same_nmea_signed_again_for_a_new_nonce_is_refused(key: SoftKey) -> None:
    """Attack: a node re-signs a fix it already reported (replayed GNSS input)."""
    fix = novato()
    seen = fix_from_evidence(
        LocationEvidence.from_fix(fix, nonce=os.urandom(32), source=SourceKind.SERIAL)
    )
    later = dataclasses.replace(fix, utc=fix.utc + dt.timedelta(seconds=30) if fix.utc else None)
    with pytest.raises(LocationImplausible) as caught:
        check(later, key, track=(seen,))
    assert caught.value.reason == "location_frozen"


def test_teleport_between_two_fixes_is_refused(key: SoftKey) -> None:
    """Attack: the node was 1 degree (111 km) north 10 s before (real fix, moved)."""
    fix = novato()
    assert fix.utc is not None
    before = dataclasses.replace(
        fix_from_evidence(
            LocationEvidence.from_fix(novato(0), nonce=os.urandom(32), source=SourceKind.SERIAL)
        ),
        latitude=fix.latitude + 1.0,
        utc=fix.utc - dt.timedelta(seconds=10),
    )
    assert check(fix, key, track=(dataclasses.replace(before, latitude=fix.latitude),)) is (
        ZoneDecision.INSIDE
    )
    with pytest.raises(LocationImplausible) as caught:
        check(fix, key, track=(before,))
    assert caught.value.reason == "location_teleport"


def test_stale_fix_is_refused(key: SoftKey) -> None:
    with pytest.raises(LocationStale, match="s old"):
        check(novato(), key, age_s=31)
    assert check(novato(), key, age_s=29) is ZoneDecision.INSIDE


def test_implausible_fix_is_refused_with_the_checks_reason(key: SoftKey) -> None:
    """The Garmin capture in simulator mode: plausible Madrid positions, GGA quality 8."""
    simulated = fixes("garmin-geko201.log")[3]
    policy = LocationRoundPolicy(thresholds=LocationPolicy(), zones=countries(), zone_ids=("ESP",))
    with pytest.raises(LocationImplausible) as caught:
        check(simulated, key, policy=policy)
    assert caught.value.reason == "location_fix_quality"


# The US-Canada border along the 49th parallel, as Natural Earth 1:110m draws it at 100° W.
BORDER_LON = -100.0


def at(lat: float, accuracy_m: float) -> Fix:
    return dataclasses.replace(
        novato(), latitude=lat, longitude=BORDER_LON, horizontal_accuracy_m=accuracy_m
    )


def test_fix_inside_but_accuracy_crossing_the_border_is_uncertain_and_refused(
    key: SoftKey,
) -> None:
    usa_zone = countries().zone("USA").geometry
    assert shapely.intersects_xy(usa_zone, BORDER_LON, 48.9999)  # the point itself is inside
    assert check(at(48.9999, 1.0), key) is ZoneDecision.INSIDE
    with pytest.raises(LocationOutsideZone, match="uncertain"):
        check(at(48.9999, 50.0), key)


def test_point_just_outside_is_refused(key: SoftKey) -> None:
    with pytest.raises(LocationOutsideZone, match="outside zone"):
        check(at(49.001, 10.0), key)


def test_any_listed_zone_will_do(key: SoftKey) -> None:
    policy = LocationRoundPolicy(
        thresholds=LocationPolicy(), zones=countries(), zone_ids=("CAN", "USA")
    )
    assert check(at(49.001, 10.0), key, policy=policy) is ZoneDecision.INSIDE


def test_policy_from_mapping() -> None:
    policy = location_policy_from_mapping(
        {"zones": ["DEU"], "thresholds": {"max_fix_age_s": 10}}, countries()
    )
    assert policy.zone_ids == ("DEU",)
    assert policy.thresholds.max_fix_age_s == 10.0
    bad: list[dict[str, object]] = [
        {"zones": ["ATLANTIS"]},
        {"zones": []},
        {"zones": "DEU"},
        {"zones": ["DEU"], "thresholds": {"max_fix_age": 1}},
        {"zones": ["DEU"], "extra": 1},
    ]
    for data in bad:
        with pytest.raises(PolicyInvalid):
            location_policy_from_mapping(data, countries())


def constant_cn0(fix: Fix, cn0: float = 42.0) -> Fix:
    """A spoofer's fix: every satellite at one power (the real fix's satellites and position)."""
    return dataclasses.replace(
        fix, signals=tuple(dataclasses.replace(s, cn0_dbhz=cn0) for s in fix.signals)
    )


def test_constant_cn0_is_refused_by_the_verifier_itself(key: SoftKey) -> None:
    """Attack (RF spoofer): one power on every satellite. The evidence is signed directly (no
    agent, so no agent-side screen): only the verifier's own C/N0 check can stop it."""
    fix = novato()
    assert len(fix.cn0_values()) >= 6
    assert check(fix, key, track=novato_track()) is ZoneDecision.INSIDE  # real C/N0 passes
    with pytest.raises(LocationImplausible) as caught:
        check(constant_cn0(fix), key, track=novato_track())
    assert caught.value.reason == "location_cn0_uniform"
    # nothing else about the fix is wrong: C/N0 varying by a few dB-Hz passes again
    varied = dataclasses.replace(
        fix,
        signals=tuple(dataclasses.replace(s, cn0_dbhz=40.0 + (s.prn % 5)) for s in fix.signals),
    )
    assert check(varied, key, track=novato_track()) is ZoneDecision.INSIDE


def test_v1_evidence_is_refused(key: SoftKey) -> None:
    """An old agent's evidence carries no C/N0: accepting it would skip the spoofing check."""
    fix = novato()
    v1 = dataclasses.replace(
        LocationEvidence.from_fix(fix, nonce=NONCE, source=SourceKind.SERIAL),
        version=1,
        rmc_status=None,
        cn0_dbhz=(),
        source=None,
        vertical_accuracy_m=None,
    )
    evidence = encode_evidence(v1)
    assert b'"v":1' in evidence
    assert fix.utc is not None
    with pytest.raises(LocationEvidenceInvalid, match="v1 is refused"):
        check_location(
            evidence=evidence,
            signature=key.sign(evidence),
            location_key=key.public,
            nonce=NONCE,
            policy=usa(),
            track=(),
            now=fix.utc,
        )


def test_v1_evidence_on_the_track_still_counts(key: SoftKey) -> None:
    """Evidence remembered from rounds before the upgrade decodes (without C/N0) and the track
    checks still run over it."""
    fix = novato()
    assert fix.utc is not None
    old = dataclasses.replace(
        LocationEvidence.from_fix(novato(4), nonce=os.urandom(32), source=SourceKind.SERIAL),
        version=1,
        rmc_status=None,
        cn0_dbhz=(),
        source=None,
        vertical_accuracy_m=None,
    )
    remembered = fix_from_evidence(decode_evidence(encode_evidence(old)))
    assert remembered.cn0_values() == []
    assert check(fix, key, track=(remembered,)) is ZoneDecision.INSIDE
    far = dataclasses.replace(old, latitude=old.latitude + 1.0)
    with pytest.raises(LocationImplausible) as caught:
        check(fix, key, track=(fix_from_evidence(far),))
    assert caught.value.reason == "location_teleport"


@pytest.mark.parametrize("name", ["ublox-neo-m9n-nmea.log", "furuno_gl_ga.log", "nl2008u.log"])
def test_fix_from_evidence_keeps_cn0_and_rmc_status(name: str) -> None:
    for f in fixes(name):
        seen = fix_from_evidence(
            LocationEvidence.from_fix(f, nonce=NONCE, source=SourceKind.SERIAL)
        )
        assert sorted(seen.cn0_values()) == sorted(float(round(v)) for v in f.cn0_values())
        assert seen.rmc_status == f.rmc_status
        assert len(seen.cn0_values()) >= 6


def test_void_rmc_status_is_refused_by_the_verifier(key: SoftKey) -> None:
    with pytest.raises(LocationImplausible) as caught:
        check(dataclasses.replace(novato(), rmc_status="V"), key)
    assert caught.value.reason == "location_fix_quality"
