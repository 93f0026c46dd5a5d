from __future__ import annotations

import pytest

from allowlists.boot import BootPolicy, check_boot_pcrs, parse_boot_policy
from geoattest.errors import BootPcrMismatch, PolicyInvalid
from geoattest.pcr_banks import PcrBank

GOLDEN = {PcrBank.SHA256: {"0": "11" * 32, "7": "22" * 32}}


def test_matching_pcrs_pass() -> None:
    policy = parse_boot_policy(GOLDEN)
    check_boot_pcrs({PcrBank.SHA256: {0: b"\x11" * 32, 7: b"\x22" * 32, 10: b"\x00" * 32}}, policy)
    assert policy.selection() == {PcrBank.SHA256: [0, 7]}


def test_every_difference_is_named() -> None:
    policy = parse_boot_policy(GOLDEN)
    with pytest.raises(BootPcrMismatch) as caught:
        check_boot_pcrs({PcrBank.SHA256: {0: b"\x33" * 32}}, policy)
    assert "sha256 PCR 0: expected 1111" in caught.value.message
    assert "sha256 PCR 7 not reported" in caught.value.message


def test_empty_policy_checks_nothing() -> None:
    check_boot_pcrs({}, BootPolicy())


@pytest.mark.parametrize(
    ("document", "where"),
    [
        ({"md5": {"0": "00"}}, "unknown bank"),
        ({PcrBank.SHA256: {"24": "11" * 32}}, "0..23"),
        ({PcrBank.SHA256: {"x": "11" * 32}}, "0..23"),
        ({PcrBank.SHA256: {"0": "zz"}}, "not a hex digest"),
        ({PcrBank.SHA256: {"0": "11" * 20}}, "20 bytes"),
    ],
)
def test_malformed_documents_are_refused(
    document: dict[PcrBank, dict[str, str]], where: str
) -> None:
    with pytest.raises(PolicyInvalid, match=where):
        parse_boot_policy(document)
