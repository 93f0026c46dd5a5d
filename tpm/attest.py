"""TPMS_ATTEST: the structure a TPM signs for TPM2_Quote and TPM2_Certify (Part 2, §10.12)."""

from __future__ import annotations

import struct
from dataclasses import dataclass

from geoattest.errors import TpmFormatError
from tpm._marshal import Reader, tpm2b, u8, u16, u32, u64
from tpm.constants import TPM_GENERATED_VALUE, St
from tpm.pcr import PcrSelection, encode_tpml_pcr_selection, read_tpml_pcr_selection

__all__ = [
    "Attest",
    "CertifyInfo",
    "ClockInfo",
    "QuoteInfo",
    "encode_tpms_attest",
    "parse_tpms_attest",
]

_MAX_NAME = 2 + 64  # TPM2B_NAME: nameAlg + largest digest (or a 4-byte handle)
_MAX_DATA = 64  # TPM2B_DATA (extraData / qualifyingData) is at most sizeof(TPMT_HA)
_HEAD = struct.Struct(">IH")  # magic, type
_CLOCK_FW = struct.Struct(">QIIBQ")  # TPMS_CLOCK_INFO, firmwareVersion
_KINDS = {St.ATTEST_QUOTE.value: St.ATTEST_QUOTE, St.ATTEST_CERTIFY.value: St.ATTEST_CERTIFY}


@dataclass(frozen=True, slots=True, kw_only=True)
class ClockInfo:
    """TPMS_CLOCK_INFO: milliseconds the TPM has run, reboot and restart counters, safe flag."""

    clock: int
    reset_count: int
    restart_count: int
    safe: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class QuoteInfo:
    """TPMS_QUOTE_INFO: which PCRs were quoted and the digest of their values."""

    pcr_selection: PcrSelection
    pcr_digest: bytes


@dataclass(frozen=True, slots=True, kw_only=True)
class CertifyInfo:
    """TPMS_CERTIFY_INFO: the name and qualified name of the certified object."""

    name: bytes
    qualified_name: bytes


@dataclass(frozen=True, slots=True, kw_only=True)
class Attest:
    """A parsed TPMS_ATTEST of type ATTEST_QUOTE or ATTEST_CERTIFY."""

    magic: int = TPM_GENERATED_VALUE
    type: St
    qualified_signer: bytes
    extra_data: bytes
    clock_info: ClockInfo
    firmware_version: int
    attested: QuoteInfo | CertifyInfo


def parse_tpms_attest(data: bytes) -> Attest:
    """Parse a TPMS_ATTEST of type ATTEST_QUOTE or ATTEST_CERTIFY.

    Raises `TpmFormatError` when the magic is not TPM_GENERATED (the TPM did not make it), the
    type is another attestation type, a size field is out of range, bytes are missing, or bytes
    are left over.
    """
    r = Reader(data, "TPMS_ATTEST")
    magic, tag = _HEAD.unpack(r.take(_HEAD.size, "magic, type"))
    if magic != TPM_GENERATED_VALUE:
        raise TpmFormatError(
            f"TPMS_ATTEST magic is 0x{magic:08x}, expected TPM_GENERATED 0xff544347"
        )
    kind = _KINDS.get(tag)
    if kind is None:
        raise TpmFormatError(f"TPMS_ATTEST type 0x{tag:04x} is not ATTEST_QUOTE or ATTEST_CERTIFY")
    qualified_signer = r.tpm2b("qualifiedSigner", _MAX_NAME)
    extra_data = r.tpm2b("extraData", _MAX_DATA)
    clock, reset_count, restart_count, safe, firmware_version = _CLOCK_FW.unpack(
        r.take(_CLOCK_FW.size, "clockInfo, firmwareVersion")
    )
    if safe > 1:
        raise TpmFormatError(f"TPMS_CLOCK_INFO.safe is {safe}, expected 0 or 1")
    attested: QuoteInfo | CertifyInfo
    if kind is St.ATTEST_QUOTE:
        selection = read_tpml_pcr_selection(r)
        attested = QuoteInfo(pcr_selection=selection, pcr_digest=r.tpm2b("pcrDigest", 64))
    else:
        attested = CertifyInfo(
            name=r.tpm2b("certifyInfo.name", _MAX_NAME),
            qualified_name=r.tpm2b("certifyInfo.qualifiedName", _MAX_NAME),
        )
    r.expect_end()
    return Attest(
        magic=magic,
        type=kind,
        qualified_signer=qualified_signer,
        extra_data=extra_data,
        clock_info=ClockInfo(
            clock=clock, reset_count=reset_count, restart_count=restart_count, safe=safe == 1
        ),
        firmware_version=firmware_version,
        attested=attested,
    )


def encode_tpms_attest(attest: Attest) -> bytes:
    """Marshal ``attest`` as a TPMS_ATTEST, byte-compatible with what a TPM signs.

    Raises ValueError when ``type`` does not match the kind of ``attested``.
    """
    info = attest.attested
    if isinstance(info, QuoteInfo):
        if attest.type is not St.ATTEST_QUOTE:
            raise ValueError(f"QuoteInfo needs type ATTEST_QUOTE, not {attest.type.name}")
        body = encode_tpml_pcr_selection(info.pcr_selection) + tpm2b(info.pcr_digest)
    else:
        if attest.type is not St.ATTEST_CERTIFY:
            raise ValueError(f"CertifyInfo needs type ATTEST_CERTIFY, not {attest.type.name}")
        body = tpm2b(info.name) + tpm2b(info.qualified_name)
    c = attest.clock_info
    return b"".join(
        (
            u32(attest.magic),
            u16(attest.type),
            tpm2b(attest.qualified_signer),
            tpm2b(attest.extra_data),
            u64(c.clock),
            u32(c.reset_count),
            u32(c.restart_count),
            u8(1 if c.safe else 0),
            u64(attest.firmware_version),
            body,
        )
    )
