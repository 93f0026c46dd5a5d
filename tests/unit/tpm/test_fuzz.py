"""Property tests: on any input the parsers return or raise TpmFormatError, never anything else."""

from __future__ import annotations

import contextlib
from collections.abc import Callable

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from geoattest.errors import TpmFormatError
from tests.paths import vector
from tpm import (
    parse_tpm2_tools_pcr_blob,
    parse_tpm2b_public,
    parse_tpml_pcr_selection,
    parse_tpms_attest,
    parse_tpmt_public,
    parse_tpmt_signature,
)

PARSERS: list[Callable[[bytes], object]] = [
    parse_tpms_attest,
    parse_tpmt_signature,
    parse_tpmt_public,
    parse_tpm2b_public,
    parse_tpml_pcr_selection,
    parse_tpm2_tools_pcr_blob,
]

SEEDS = [
    vector("keylime/tpm2_tools_emulator/quote.out").read_bytes(),
    vector("keylime/tpm2_tools_emulator/quotesig.out").read_bytes(),
    vector("keylime/tpm2_tools_emulator/ak.pub").read_bytes(),
    vector("keylime/tpm2_tools_emulator/ak.pub").read_bytes()[2:],
    vector(
        "keylime/ek_ca/leaf/infineon_optiga_ecc_ek_leaf_CA035.expected_tpm2b_public.bin"
    ).read_bytes()[2:],
    vector("keylime/tpm2_tools_emulator/quotepcr.out").read_bytes(),
]


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    """A real structure with a few bytes overwritten, then possibly cut or extended."""
    data = bytearray(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(0, 4))):
        data[draw(st.integers(0, len(data) - 1))] = draw(st.integers(0, 255))
    cut = draw(st.integers(0, len(data)))
    return bytes(data[:cut]) + draw(st.binary(max_size=4))


def _only_format_errors(parser: Callable[[bytes], object], data: bytes) -> None:
    with contextlib.suppress(TpmFormatError):
        parser(data)


@pytest.mark.parametrize("parser", PARSERS, ids=lambda p: p.__name__)
@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.binary(max_size=400))
def test_random_bytes(parser: Callable[[bytes], object], data: bytes) -> None:
    _only_format_errors(parser, data)


@pytest.mark.parametrize("parser", PARSERS, ids=lambda p: p.__name__)
@settings(max_examples=300, deadline=None)
@given(data=mutated())
def test_mutated_real_structures(parser: Callable[[bytes], object], data: bytes) -> None:
    _only_format_errors(parser, data)
