"""Request and response schemas shared by the services' HTTP APIs.

Pydantic lives only at this edge: views validate bodies into these models and convert them to the
typed values of the core at once. Binary values travel as base64 (standard alphabet), digests as
lowercase hex. This module is a leaf: it imports nothing from the project.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Annotated, Literal, Self, TypeAlias

import rfc8785
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PlainSerializer,
    WithJsonSchema,
    model_validator,
)
from pydantic.functional_validators import BeforeValidator
from pydantic_core import PydanticCustomError

from geoattest.errors import PcrBankUnknown
from geoattest.pcr_banks import PcrBank, parse_bank

# An agent id goes into URLs, file names, log lines and Redis keys: ASCII letters, digits, ``.``,
# ``_`` and ``-``, at most 64, starting with a letter or digit (so never ``.``, ``..`` or ``-x``).
AGENT_ID_MAX_LENGTH = 64
_AGENT_ID_BODY = r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}"
AGENT_ID_PATTERN = rf"^{_AGENT_ID_BODY}$"
AGENT_ID_RULE = "1-64 of [A-Za-z0-9._-], starting with a letter or digit"  # for messages
MAX_BLOB_BYTES = 16 * 1024
MAX_BOOT_LOG_BYTES = 4 * 1024 * 1024  # a TCG event log; real ones are 20-200 KiB
MAX_IMA_LINE_BYTES = 512 * 1024  # one measurement: a name (PATH_MAX) and an ima-buf buffer in hex


def _b64_to_bytes(value: object, limit: int = MAX_BLOB_BYTES) -> bytes:
    if isinstance(value, bytes):
        return value
    if not isinstance(value, str):
        raise ValueError("expected a base64 string")
    if len(value) > limit * 4 // 3 + 4:
        raise ValueError(f"base64 value longer than {limit} bytes")
    try:
        return base64.b64decode(value, validate=True)
    except binascii.Error as e:
        raise ValueError(f"not valid base64: {e}") from e


def _b64_boot_log(value: object) -> bytes:
    return _b64_to_bytes(value, MAX_BOOT_LOG_BYTES)


def _b64_ima_line(value: object) -> bytes:
    return _b64_to_bytes(value, MAX_IMA_LINE_BYTES)


def _bytes_to_b64(value: bytes) -> str:
    return base64.b64encode(value).decode("ascii")


B64Bytes = Annotated[
    bytes,
    BeforeValidator(_b64_to_bytes),
    PlainSerializer(_bytes_to_b64, return_type=str),
    WithJsonSchema({"type": "string", "contentEncoding": "base64"}),
]
B64BootLog = Annotated[  # B64Bytes with room for a whole boot event log
    bytes,
    BeforeValidator(_b64_boot_log),
    PlainSerializer(_bytes_to_b64, return_type=str),
    WithJsonSchema({"type": "string", "contentEncoding": "base64"}),
]
B64ImaLine = Annotated[  # B64Bytes with room for one IMA measurement line
    bytes,
    BeforeValidator(_b64_ima_line),
    PlainSerializer(_bytes_to_b64, return_type=str),
    WithJsonSchema({"type": "string", "contentEncoding": "base64"}),
]
AgentId = Annotated[str, Field(pattern=AGENT_ID_PATTERN)]
AGENT_ID_SCHEMA = {"type": "string", "pattern": AGENT_ID_PATTERN, "maxLength": AGENT_ID_MAX_LENGTH}


def is_agent_id(value: str) -> bool:
    """True when ``value`` matches ``AGENT_ID_PATTERN`` exactly (no trailing newline slips by)."""
    return re.fullmatch(_AGENT_ID_BODY, value) is not None


class _Wire(BaseModel):
    """A message between peers (agent, registrar, verifier) that may run other versions.

    Unknown fields are accepted and ignored, and senders omit fields at their default
    (``model_dump_json(exclude_defaults=True)``), so a new optional field never breaks the other
    side. A field that changes meaning gets a new name, never a new meaning.
    """

    model_config = ConfigDict(frozen=True, extra="ignore")


class _OperatorInput(BaseModel):
    """What an operator asks of a service: strict, because ignoring a field an operator meant
    (a policy setting the verifier does not know) would silently weaken what they asked for."""

    model_config = ConfigDict(frozen=True, extra="forbid")


LOCATION_KEY_NONCE_BYTES = 32
LocationKeyNonceHex = Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]


class LocationKeyWire(_Wire):
    """The TPM-resident location key and its TPM2_Certify by the AK (``POST /v1/agents`` field,
    ``PUT /v1/agents/<id>/location-key`` body).

    The certify's qualifying data is ``location_key_qualifying_data(agent_id, ak_name, nonce)``.
    At enrolment there is no ``nonce`` (the credential activation makes the request fresh); a
    later registration or rotation carries the nonce of a challenge the registrar just issued
    (``POST /v1/agents/<id>/location-key/challenge``), so an old certification cannot be
    registered again.
    """

    public: B64Bytes  # marshalled TPM2B_PUBLIC of the location key
    certify_attest: B64Bytes  # TPMS_ATTEST of TPM2_Certify(location key, AK)
    certify_signature: B64Bytes  # TPMT_SIGNATURE over it by the AK
    nonce: LocationKeyNonceHex | None = None  # the registrar's challenge it answers (rotation)


class LocationKeyChallengeView(_Wire):
    """A single-use registrar nonce for the next location-key certification of one agent."""

    nonce: LocationKeyNonceHex
    expires_at: datetime


MAX_RECEIVER_TEXTS = 16  # ``geofence.receiver.MAX_RECEIVER_TEXTS``
_ReceiverText = Annotated[str, Field(min_length=1, max_length=128, pattern=r"^[ -~]+$")]


class GnssReceiverWire(_Wire):
    """The GNSS receiver an agent enrols with (``geofence.GnssReceiver``): the source kind, the
    receiver's identity banners as its fixes carry them (none: *unidentified*), and the device
    it is read from (informational: not compared per round). Printable ASCII only, bounded."""

    source: Annotated[str, Field(pattern=r"^(file|serial|gpsd)$")]
    texts: Annotated[list[_ReceiverText], Field(max_length=MAX_RECEIVER_TEXTS)] = Field(
        default_factory=list
    )
    device: Annotated[str, Field(min_length=1, max_length=512, pattern=r"^[ -~]+$")] | None = None


def receiver_canonical(receiver: GnssReceiverWire) -> bytes:
    """RFC 8785 canonical JSON of ``receiver`` (defaults omitted): what the registrar stores and
    its identity statement names by SHA-256."""
    return rfc8785.dumps(receiver.model_dump(mode="json", exclude_defaults=True))


class EnrolRequest(_Wire):
    """What an agent posts to ``POST /v1/agents`` (Keylime-style registration)."""

    agent_id: AgentId
    ek_certificate: B64Bytes  # DER (or PEM) as read from the TPM's NV index
    ek_public: B64Bytes  # marshalled TPM2B_PUBLIC of the EK recreated from the TCG template
    ak_public: B64Bytes  # marshalled TPM2B_PUBLIC of the attestation key
    agent_url: (
        Annotated[str, Field(pattern=r"^https://[^\s/]+(:\d+)?(/\S*)?$", max_length=512)] | None
    ) = None  # the agent's evidence API: https only (mTLS), optionally with a path prefix
    tls_certificate: B64Bytes | None = None  # DER of the agent API's server certificate (pinned)
    location_key: LocationKeyWire | None = None  # certified by ``ak_public`` (geofencing nodes)
    # The GNSS receiver the node reads (geofencing nodes): bound by the activation proof.
    gnss_receiver: GnssReceiverWire | None = None


class CredentialChallengeWire(_Wire):
    """MakeCredential output for the AK name, encrypted to the EK."""

    credential_blob: B64Bytes  # marshalled TPM2B_ID_OBJECT
    encrypted_secret: B64Bytes  # marshalled TPM2B_ENCRYPTED_SECRET
    expires_at: datetime


class EnrolResponse(_Wire):
    agent_id: AgentId
    state: str
    challenge: CredentialChallengeWire


class ActivateRequest(_Wire):
    """Proof that the agent's TPM recovered the secret: ``activation_proof`` as lowercase hex."""

    proof: Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]


class AgentView(_Wire):
    """An agent's identity record as the registrar shows it (no secrets)."""

    agent_id: AgentId
    state: str
    ek_fingerprint: str
    ek_certificate: B64Bytes
    ek_public: B64Bytes
    ak_public: B64Bytes | None
    ak_name: str | None
    ek_anchor_subject: str
    ek_anchor_fingerprint: str
    tpm_manufacturer: str | None
    tpm_model: str | None
    purchase_order: str | None
    asset_tag: str | None
    enrolled_at: datetime
    activated_at: datetime | None
    agent_url: str | None = None  # where the verifier reaches the agent's evidence API
    tls_certificate: B64Bytes | None = None  # the agent API's server certificate, to pin
    location_key_public: B64Bytes | None = None  # TPM2B_PUBLIC of the TPM-resident location key
    location_key_certify_attest: B64Bytes | None = None  # its TPM2_Certify by the AK (TPMS_ATTEST)
    location_key_certify_signature: B64Bytes | None = None  # and the AK's TPMT_SIGNATURE over it
    # The registrar challenge the certification answers (hex; absent for one made at enrolment).
    # Not in the signed statement: the certification it covers binds it already.
    location_key_nonce: LocationKeyNonceHex | None = None
    # The GNSS receiver recorded at enrolment (in the signed statement as its canonical SHA-256).
    gnss_receiver: GnssReceiverWire | None = None
    # The registrar's signed statement of these facts (``geoattest.identity_statement``).
    identity_statement: B64Bytes | None = None
    identity_signature: B64Bytes | None = None


class SigningKeyView(_Wire):
    """The registrar's public signing key (pin it from a channel you trust)."""

    key_id: str  # RFC 7638 thumbprint
    public_key_pem: str


class HealthView(_Wire):
    """``GET /v1/healthz`` of a service: it answers, nothing more (no dependency is probed)."""

    status: str
    service: str


class AgentList(_Wire):
    agents: list[AgentView]


JsonValue: TypeAlias = (
    bool | int | float | str | Sequence["JsonValue"] | Mapping[str, "JsonValue"] | None
)
"""A value parsed from JSON (``json.loads``) or ready for it."""

ENROLMENT_DIGEST_PREFIX = b"geoattest-enrolment-v1\x00"
ACTIVATION_PROOF_PREFIX = b"geoattest-activate-v3\x00"


def enrolment_body(request: EnrolRequest) -> dict[str, JsonValue]:
    """The JSON object an agent sends for ``request`` (fields at their default omitted)."""
    return request.model_dump(mode="json", exclude_defaults=True)


def enrolment_digest(body: Mapping[str, JsonValue]) -> bytes:
    """``SHA-256("geoattest-enrolment-v1" ‖ 0x00 ‖ JCS(body))``: the digest the proof binds.

    ``body`` is the enrolment request as a JSON object, exactly as the agent sent it and as the
    registrar parsed it off the wire (fields this version does not know included), and JCS is
    RFC 8785 canonical JSON: the bytes do not depend on any library's rendering. Raises
    ``ValueError`` (``rfc8785.CanonicalizationError``) for values JSON cannot carry exactly:
    NaN or infinite numbers, integers beyond 2**53, lone surrogates, non-string keys.
    """
    return hashlib.sha256(ENROLMENT_DIGEST_PREFIX + rfc8785.dumps(body)).digest()


def activation_proof(secret: bytes, request_digest: bytes) -> bytes:
    """``HMAC-SHA256(secret, "geoattest-activate-v3" ‖ 0x00 ‖ enrolment_digest(request))``.

    ``secret`` is the credential the TPM recovered with ActivateCredential. The proof shows the
    TPM holds both the EK and the AK without sending the secret, and binds everything the agent
    sent (agent id, AK, API address, TLS certificate, location key, and fields a registrar of
    another version ignores): whoever alters the request on its way cannot produce the proof
    for the altered one, so it is never activated.
    """
    return hmac.new(secret, ACTIVATION_PROOF_PREFIX + request_digest, hashlib.sha256).digest()


def location_key_qualifying_data(
    agent_id: str, ak_name: bytes, nonce: bytes | None = None
) -> bytes:
    """The extraData of the location key's TPM2_Certify, derived alike by agent and registrar.

    At enrolment: ``SHA-256("geoattest-location-key-v1" ‖ 0x00 ‖ agent id ‖ 0x00 ‖ AK name)``;
    a certification made for one agent id or one AK cannot be presented for another. Answering
    a registrar challenge ``nonce``: ``SHA-256("geoattest-location-key-v2" ‖ 0x00 ‖ agent id ‖
    0x00 ‖ AK name ‖ 0x00 ‖ nonce)``, which the registrar accepts once, while the nonce is fresh.
    """
    bound = agent_id.encode("ascii") + b"\x00" + ak_name
    if nonce is None:
        return hashlib.sha256(b"geoattest-location-key-v1\x00" + bound).digest()
    return hashlib.sha256(b"geoattest-location-key-v2\x00" + bound + b"\x00" + nonce).digest()


# --- attestation evidence: verifier ⇄ agent (``POST /v1/evidence`` on the agent's mTLS API) ------


def _wire_bank(value: object) -> PcrBank:
    try:
        return parse_bank(value, where="bank")
    except PcrBankUnknown as e:
        # A pydantic error type of its own, so ``validate_json`` answers with this error's code.
        raise PydanticCustomError(PcrBankUnknown.code, "{message}", {"message": e.message}) from e


# A bank name ("sha256") parsed into a ``PcrBank``: the same string on the wire, typed inside.
BankName = Annotated[PcrBank, BeforeValidator(_wire_bank)]
HexDigest = Annotated[str, Field(pattern=r"^(?:[0-9a-f]{2}){20,64}$")]  # whole bytes only
PcrIndexText = Annotated[str, Field(pattern=r"^(?:1?[0-9]|2[0-3])$")]  # "0".."23", ASCII digits
MAX_PCR_INDEX = 23


class EvidenceRequest(_Wire):
    """What the verifier asks for in one round.

    ``ima_offset`` is the number of IMA entries the verifier has already verified: the agent
    returns the measurement list from that entry on (0 after a reboot or on the first round).
    """

    nonce: Annotated[str, Field(pattern=r"^[0-9a-f]{32,128}$")]  # 16..64 bytes, hex
    # At least one bank, each with at least one PCR, none twice: a quote of nothing proves
    # nothing, and a repeated index has no one meaning for the TPM's selection.
    pcrs: Annotated[
        dict[
            BankName,
            Annotated[list[Annotated[int, Field(ge=0, le=MAX_PCR_INDEX)]], Field(min_length=1)],
        ],
        Field(min_length=1),
    ]
    ima_offset: Annotated[int, Field(ge=0)] = 0
    include_location: bool = False
    include_boot_log: bool = False  # also send the TCG boot event log (binary_bios_measurements)

    @model_validator(mode="after")
    def _each_pcr_once(self) -> Self:
        for bank, indices in self.pcrs.items():
            if len(set(indices)) != len(indices):
                raise ValueError(f"pcrs.{bank} names a PCR more than once: {indices}")
        return self


class QuoteWire(_Wire):
    attest: B64Bytes  # TPMS_ATTEST as the TPM signed it
    signature: B64Bytes  # marshalled TPMT_SIGNATURE


LineIndexText = Annotated[str, Field(pattern=r"^(?:0|[1-9][0-9]{0,8})$")]


def render_line(entry: bytes) -> str:
    """How a line that is not UTF-8 shows in ``ImaWire.lines``: ``\\xNN`` for each byte that
    does not decode (lossy: ``raw_lines`` carries the bytes)."""
    return entry.decode("utf-8", "backslashreplace")


class ImaWire(_Wire):
    """IMA measurement-list entries, byte for byte, each without its final newline.

    The kernel prints names as raw bytes (``allowlists.ima.template``), which JSON text cannot
    always carry. ``lines`` holds one string per entry: the entry itself when it is UTF-8 (a
    ``\\n`` inside a name travels as the JSON escape), otherwise ``render_line`` of it, a
    readable but lossy stand-in. ``raw_lines`` then maps that entry's index (decimal text, 0 is
    the first of ``lines``) to its exact bytes in base64, which replace the stand-in. It is
    omitted when every entry is UTF-8, so a peer from before it sees the same message as before;
    one that ignores it sees the stand-in, as old agents sent, and fails that line's template
    hash as it always did.
    """

    offset: Annotated[int, Field(ge=0)]  # index of the first line below in the whole log
    lines: list[str]  # ascii_runtime_measurements entries, without trailing newline
    raw_lines: dict[LineIndexText, B64ImaLine] | None = None  # index → exact bytes (not UTF-8)

    @model_validator(mode="after")
    def _raw_lines_index_lines(self) -> Self:
        for index in self.raw_lines or {}:
            if int(index) >= len(self.lines):
                raise ValueError(
                    f"raw_lines index {index} is past the {len(self.lines)} lines sent"
                )
        return self

    @classmethod
    def from_entries(cls, offset: int, entries: Sequence[bytes]) -> ImaWire:
        """The wire form of ``entries`` (exact bytes, no final newlines) from entry ``offset``."""
        lines: list[str] = []
        raw: dict[str, bytes] = {}
        for index, entry in enumerate(entries):
            try:
                lines.append(entry.decode("utf-8"))
            except UnicodeDecodeError:
                lines.append(render_line(entry))
                raw[str(index)] = entry
        return cls(offset=offset, lines=lines, raw_lines=raw or None)

    def entries(self) -> list[bytes]:
        """The entries' exact bytes (``raw_lines`` in place of their stand-ins)."""
        raw = self.raw_lines or {}
        return [
            raw[str(index)] if str(index) in raw else line.encode("utf-8")
            for index, line in enumerate(self.lines)
        ]


class EvidenceResponse(_Wire):
    """One round's evidence. The quote's extraData is ``quote_qualifying_data(nonce, location)``;
    the IMA lines are read *after* the quote, so they cover at least what PCR 10 reflects."""

    quote: QuoteWire
    pcrs: dict[BankName, dict[PcrIndexText, HexDigest]]  # bank -> PCR index -> value
    ima: ImaWire
    location: B64Bytes | None = None  # signed location evidence (geofence), when asked for
    location_signature: B64Bytes | None = None  # TPMT_SIGNATURE by the TPM-resident location key
    boot_log: B64BootLog | None = None  # TCG event log, when asked for and the agent has one


def quote_qualifying_data(nonce: bytes, location_evidence: bytes | None) -> bytes:
    """The quote's extraData: binds the verifier's nonce and the location evidence in one digest.

    ``SHA-256("geoattest-quote-v1" ‖ nonce ‖ SHA-256(location evidence))``; without location
    evidence the last part is empty. A quote cannot be reused with other location evidence.
    """
    location_digest = hashlib.sha256(location_evidence).digest() if location_evidence else b""
    return hashlib.sha256(b"geoattest-quote-v1" + nonce + location_digest).digest()


# --- verifier API ---------------------------------------------------------------------------------

POLICY_NAME_PATTERN = r"^[A-Za-z0-9._-]{1,64}$"
POLICY_NAME_RULE = "1-64 of [A-Za-z0-9._-]"  # for messages
PolicyName = Annotated[str, Field(pattern=POLICY_NAME_PATTERN)]
POLICY_NAME_SCHEMA = {"type": "string", "pattern": POLICY_NAME_PATTERN}


def is_policy_name(value: str) -> bool:
    """True when ``value`` matches ``POLICY_NAME_PATTERN`` exactly (no trailing newline)."""
    return re.fullmatch(POLICY_NAME_PATTERN[1:-1], value) is not None


class PolicyDocument(_OperatorInput):
    """An attestation policy as operators write it (``PUT /v1/policies/<name>``).

    ``runtime_policy`` is an IMA runtime policy in geoattest's JSON format (docs/ima-policy.md);
    it stays a JSON object here and is parsed into a typed policy at once by the verifier.
    """

    boot_pcrs: dict[BankName, dict[PcrIndexText, HexDigest]] = Field(default_factory=dict)
    ima_banks: list[BankName] = Field(default_factory=lambda: [PcrBank.SHA256])
    runtime_policy: dict[str, object] | None = None
    # Proof-of-Geofencing: ``{"zones": ["DEU", …], "thresholds": {…}}`` (docs/location-policy.md);
    # the zone ids name features of the verifier's zones file. None: location is not checked.
    location: dict[str, object] | None = None
    # Replay the node's TCG boot event log and require it to reproduce the quoted PCRs 0-7
    # (a consistency check on top of the golden ``boot_pcrs``; docs/api.md).
    boot_log: bool = False
    # The lease: seconds a passed round vouches for the agent (None: 2 x interval + deadline + 1).
    max_age_seconds: float | None = None


class PolicyView(_Wire):
    name: PolicyName
    version: int
    updated_at: datetime
    document: PolicyDocument


class PolicySummaryView(_Wire):
    """A stored policy without its document (a whole-system policy is tens of MB): what
    ``PUT /v1/policies/<name>`` answers and ``GET /v1/policies`` lists."""

    name: PolicyName
    version: int
    updated_at: datetime
    sha256: str  # hex SHA-256 of the stored RFC 8785 document
    size_bytes: int  # length of that document


class AddAgentRequest(_OperatorInput):
    policy: PolicyName
    mode: Literal["pull", "push"] = "pull"  # push: the agent posts its evidence (ADR 19)


class AgentStatusView(_Wire):
    """An agent as the verifier shows it. ``state`` is derived through the lease: ``attested``
    only while the last passed round is younger than ``lease_max_age_seconds``; the stored
    verdict is ``stored_state``."""

    agent_id: AgentId
    policy: PolicyName
    state: str
    stored_state: str
    reason: str | None
    message: str | None
    details: dict[str, str] = Field(default_factory=dict)  # e.g. offending IMA path and digest
    state_since: datetime
    last_round_at: datetime | None = None
    last_passed_at: datetime | None = None
    lease_expires_at: datetime | None = None
    lease_remaining_seconds: float = 0.0
    lease_max_age_seconds: float
    ima_entries_verified: int | None = None
    records: int = 0  # evidence records so far (the seq of the newest)
    mode: str = "pull"  # pull: the verifier fetches evidence; push: the agent posts it


class EventView(_Wire):
    """One transition; the same body as the revocation channel and the webhook."""

    type: str
    id: int
    agent_id: AgentId
    at: datetime
    from_state: str
    to_state: str
    reason: str | None
    message: str | None
    details: dict[str, str] = Field(default_factory=dict)  # e.g. offending IMA path and digest
    round_id: str | None = None
    record_seq: int | None = None


class RoundSummaryView(_Wire):
    """One evidence record in a page of ``GET /v1/agents/<id>/rounds``."""

    kind: str  # round | operator | watchdog
    seq: int
    round_id: str
    started_at: datetime
    ended_at: datetime
    outcome: str | None
    reason: str | None
    kept: bool  # kept in full for good (else folded after the hot window)
    digest: str
    prev: str
    size: int


class FoldView(_Wire):
    """Consecutive records folded past the hot window: the chain's two ends and the counts."""

    kind: str = "fold"
    first_seq: int
    last_seq: int
    count: int
    first_at: datetime
    last_at: datetime
    prev: str
    head: str
    outcomes: dict[str, int]


class RoundPage(_Wire):
    items: list[RoundSummaryView | FoldView]
    next_after_seq: int | None  # pass as ``after_seq`` for the next page; None: no more


class RoundRecordView(_Wire):
    """One stored record: its digest, its canonical bytes (base64) and their decoded JSON."""

    agent_id: AgentId
    seq: int
    round_id: str
    digest: str
    kept: bool
    canonical: B64Bytes
    record: dict[str, object]
