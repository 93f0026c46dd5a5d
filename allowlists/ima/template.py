"""IMA measurement-list lines (``ascii_runtime_measurements``) and their template data.

One line per measurement, fields separated by single spaces::

    10 <sha1 template hash> ima-ng  <alg>:<file digest> <path>
    10 <sha1 template hash> ima-sig <alg>:<file digest> <path> <signature hex, may be empty>
    10 <sha1 template hash> ima-buf <alg>:<buffer digest> <name> <buffer hex>
    10 <sha1 template hash> ima     <sha1 file digest hex> <path>            (legacy)

The kernel hashes the *template data*, not the text. For every template except legacy ``ima``
the template data is each field prefixed with its length (u32, little endian):

- ``d-ng``: ``b"<alg>:\\0" + digest``
- ``n-ng``: ``path + b"\\0"``
- ``sig`` / ``buf``: the raw bytes (possibly empty)

Legacy ``ima`` hashes the 20-byte sha1 digest followed by the path zero-padded to 256 bytes, with
no length prefixes. The hash extended into PCR 10 of a bank is that bank's hash of the template
data. A *violation* entry (the kernel saw a file change under a reader) prints an all-zero template
hash and extends all-ones into every bank.

**What the kernel prints** (``ima_ascii_measurements_show`` in ``ima_fs.c``,
``ima_show_template_data_ascii`` in ``ima_template_lib.c``): the PCR, the sha1 template hash in
lowercase hex, the template name, then each field after one space (an empty field prints nothing,
so an unsigned ``ima-sig`` line ends in ``"path "``), then ``\n``. Digests and hex fields are
``%02x`` per byte. Names (``n``/``n-ng``) are printed with ``%s``: the raw bytes, with no escaping
at all, so a name may hold bytes that are not UTF-8, backslashes, tabs and even ``\n``. The one
change the kernel makes is in the template data itself, before it is hashed
(``ima_write_template_field_data``): every space of a name becomes ``_``, so a printed name never
holds a space and the hash covers the ``_``. A name never holds a NUL (it is a C string); a line
showing one was not written by a kernel and is refused (it is also how a relabelled legacy
``ima`` entry would have to look, see ``allowlists.ima.labels``).

Lines are text here: readers decode the kernel's bytes as UTF-8 with ``surrogateescape``, so that
``line.encode("utf-8", "surrogateescape")`` gives the bytes back exactly, and the template data
is rebuilt from those bytes. A name holding ``\n`` spans several lines of the file;
``allowlists.ima.framing`` puts such an entry back together.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from geoattest.errors import ImaLogInvalid
from geoattest.pcr_banks import BANK_DIGEST_SIZES, PcrBank

TEMPLATES = ("ima-ng", "ima-sig", "ima-buf", "ima")
"""Templates this module parses and encodes."""

DIGEST_SIZES: dict[str, int] = {
    "md5": 16,
    "sha1": 20,
    "rmd160": 20,
    "tgr192": 24,
    "sha224": 28,
    "sha256": 32,
    "sm3": 32,
    "sm3_256": 32,
    "streebog256": 32,
    "sha384": 48,
    "sha512": 64,
    "wp512": 64,
    "streebog512": 64,
}
"""File-digest algorithms IMA may print (kernel ``hash_algo_name``) and their digest sizes."""

LEGACY_NAME_SIZE = 256  # IMA_EVENT_NAME_LEN_MAX + 1: legacy ``ima`` pads the path to this size
_ZERO_SHA1_HEX = "0" * 40


@dataclass(frozen=True, slots=True, kw_only=True)
class ImaEntry:
    """One parsed measurement. ``path`` is the file path, or the buffer name for ``ima-buf``."""

    line_number: int
    pcr: int
    template_hash: bytes
    """The sha1 template hash printed in the line (all zeros for a violation)."""
    template: str
    digest_alg: str
    digest: bytes
    path: str
    signature: bytes | None = None
    """``ima-sig`` only: the appended signature, or None when the field is empty."""
    buffer: bytes | None = None
    """``ima-buf`` only: the measured buffer (e.g. a DER certificate loaded on a keyring)."""
    template_data: bytes

    @property
    def is_violation(self) -> bool:
        return not any(self.template_hash)

    @property
    def digest_text(self) -> str:
        """The digest as the log and policies print it: ``alg:hex``."""
        return f"{self.digest_alg}:{self.digest.hex()}"

    def extend_value(self, bank: PcrBank) -> bytes:
        """What this entry extends into PCR ``self.pcr`` of ``bank``."""
        return template_hash(self.template_data, bank, violation=self.is_violation)


@dataclass(frozen=True, slots=True, kw_only=True)
class EncodedEntry:
    """A measurement as the kernel would log it: the text line (no newline) and template data."""

    line: str
    template_data: bytes
    template_hash_sha1: bytes

    @property
    def raw(self) -> bytes:
        """The line as the kernel writes it (without the final newline)."""
        return self.line.encode("utf-8", "surrogateescape")


def template_hash(template_data: bytes, bank: PcrBank, *, violation: bool = False) -> bytes:
    """The value extended into PCR 10 of ``bank`` for this template data.

    Violations extend all-ones (``0xFF`` times the bank's digest size), as the kernel does.
    Raises ``ValueError`` for a value that is no ``PcrBank`` (a caller past the type checker).
    """
    size = BANK_DIGEST_SIZES.get(bank)
    if size is None or not isinstance(bank, PcrBank):
        supported = ", ".join(BANK_DIGEST_SIZES)
        raise ValueError(f"unsupported PCR bank {bank!r} (supported: {supported})")
    if violation:
        return b"\xff" * size
    return hashlib.new(bank, template_data).digest()


def _field(data: bytes) -> bytes:
    return len(data).to_bytes(4, "little") + data


def build_template_data(
    *,
    template: str,
    path: str,
    digest: bytes,
    digest_alg: str = "sha256",
    signature: bytes | None = None,
    buffer: bytes | None = None,
) -> bytes:
    """The template data the kernel hashes for one measurement (see the module docstring).

    Raises ``ValueError`` for an unknown template or a path the template cannot hold.
    """
    name = path.encode("utf-8", "surrogateescape")
    if template == "ima":
        if len(name) >= LEGACY_NAME_SIZE:
            raise ValueError(f"legacy ima template holds paths below {LEGACY_NAME_SIZE} bytes")
        return digest + name.ljust(LEGACY_NAME_SIZE, b"\0")
    data = _field(digest_alg.encode("ascii") + b":\0" + digest) + _field(name + b"\0")
    if template == "ima-ng":
        return data
    if template == "ima-sig":
        return data + _field(signature or b"")
    if template == "ima-buf":
        return data + _field(buffer or b"")
    raise ValueError(f"unsupported IMA template {template!r} (supported: {', '.join(TEMPLATES)})")


def encode_entry(
    *,
    template: str = "ima-ng",
    path: str,
    digest: bytes,
    digest_alg: str = "sha256",
    signature: bytes | None = None,
    buffer: bytes | None = None,
    pcr: int = 10,
) -> EncodedEntry:
    """Encode one measurement exactly as the kernel logs it (for emulators and tests).

    ``digest`` is the file digest (``ima-buf``: the digest of ``buffer``). ``path`` may hold any
    character but NUL (non-UTF-8 bytes as surrogate escapes); like the kernel, each space becomes
    ``_`` in the entry. Raises ``ValueError`` for inconsistent arguments (a digest of the wrong
    size, an empty path or one with a NUL, a legacy ``ima`` entry that is not sha1).
    """
    if DIGEST_SIZES.get(digest_alg) != len(digest):
        raise ValueError(f"a {digest_alg} digest has {DIGEST_SIZES.get(digest_alg)} bytes")
    if template == "ima" and digest_alg != "sha1":
        raise ValueError("the legacy ima template carries sha1 digests only")
    if not path or "\0" in path:
        raise ValueError(f"path {path!r} cannot be written in a {template} line")
    path = path.replace(" ", "_")  # ima_write_template_field_data
    data = build_template_data(
        template=template,
        path=path,
        digest=digest,
        digest_alg=digest_alg,
        signature=signature,
        buffer=buffer,
    )
    th = hashlib.sha1(data).digest()  # noqa: S324 - the kernel's template hash, not our choice
    shown = digest.hex() if template == "ima" else f"{digest_alg}:{digest.hex()}"
    line = f"{pcr} {th.hex()} {template} {shown} {path}"
    if template == "ima-sig":
        line += " " + (signature or b"").hex()
    elif template == "ima-buf":
        line += " " + (buffer or b"").hex()
    return EncodedEntry(line=line, template_data=data, template_hash_sha1=th)


def _hex(text: str, what: str, line_number: int) -> bytes:
    try:
        value = bytes.fromhex(text)
    except ValueError:
        raise ImaLogInvalid(f"line {line_number}: {what} is not hex: {text[:80]!r}") from None
    if len(value) * 2 != len(text):
        raise ImaLogInvalid(f"line {line_number}: {what} is not plain hex: {text[:80]!r}")
    return value


def _alg_digest(text: str, line_number: int) -> tuple[str, bytes]:
    alg, sep, hexd = text.partition(":")
    if not sep:
        raise ImaLogInvalid(f"line {line_number}: file digest {text[:80]!r} is not alg:hex")
    size = DIGEST_SIZES.get(alg)
    if size is None:
        raise ImaLogInvalid(f"line {line_number}: unknown digest algorithm {alg[:40]!r}")
    digest = _hex(hexd, "file digest", line_number)
    if len(digest) != size:
        raise ImaLogInvalid(f"line {line_number}: {alg} digest has {len(digest)} bytes")
    return alg, digest


def parse_entry(line: str, line_number: int = 1, *, verify: bool = True) -> ImaEntry:
    """Parse one log line (without its newline) into an ``ImaEntry``.

    With ``verify`` (the default) the printed sha1 template hash must equal the sha1 of the
    reconstructed template data (violations, printed as all zeros, are exempt).
    Raises ``ImaLogInvalid`` naming ``line_number`` for anything malformed; nothing else.
    """
    head = line.split(" ", 3)
    if len(head) != 4:
        raise ImaLogInvalid(f"line {line_number}: expected 'PCR HASH TEMPLATE DATA': {line[:80]!r}")
    pcr_text, th_text, template, rest = head
    if not (pcr_text.isascii() and pcr_text.isdecimal() and len(pcr_text) <= 2):
        raise ImaLogInvalid(f"line {line_number}: PCR index {pcr_text[:20]!r} is not a number")
    th = _hex(th_text, "template hash", line_number)
    if len(th) != 20:
        raise ImaLogInvalid(f"line {line_number}: template hash is not a sha1 digest")
    signature: bytes | None = None
    buffer: bytes | None = None
    if template == "ima":
        digest_text, _, path = rest.partition(" ")
        alg, digest = "sha1", _hex(digest_text, "file digest", line_number)
        if len(digest) != 20:
            raise ImaLogInvalid(f"line {line_number}: legacy ima digest is not sha1")
    elif template in ("ima-ng", "ima-sig", "ima-buf"):
        digest_text, _, path = rest.partition(" ")
        alg, digest = _alg_digest(digest_text, line_number)
        if template != "ima-ng":
            # The last field is hex (maybe empty; the kernel prints "path " then). A line whose
            # trailing space was stripped has no such field: then it is all path.
            name, sep, tail = path.rpartition(" ")
            if sep:
                path = name
                raw = _hex(tail, template[4:] + " field", line_number)
            else:
                raw = b""
            if template == "ima-sig":
                signature = raw or None
            else:
                buffer = raw
    else:
        raise ImaLogInvalid(f"line {line_number}: unsupported IMA template {template[:40]!r}")
    if not path:
        raise ImaLogInvalid(f"line {line_number}: no path")
    if "\0" in path:
        raise ImaLogInvalid(
            f"line {line_number}: NUL byte in the name {path[:200]!r}: no kernel writes one"
        )
    try:
        data = build_template_data(
            template=template,
            path=path,
            digest=digest,
            digest_alg=alg,
            signature=signature,
            buffer=buffer,
        )
    except (ValueError, UnicodeError) as e:
        raise ImaLogInvalid(f"line {line_number}: {e}") from None
    if verify and th_text != _ZERO_SHA1_HEX:
        computed = hashlib.sha1(data).digest()  # noqa: S324 - the kernel's template hash
        if computed != th:
            raise ImaLogInvalid(
                f"line {line_number}: template hash mismatch for {path[:200]!r}: "
                f"line says {th.hex()}, template data hashes to {computed.hex()}"
            )
    return ImaEntry(
        line_number=line_number,
        pcr=int(pcr_text),
        template_hash=th,
        template=template,
        digest_alg=alg,
        digest=digest,
        path=path,
        signature=signature,
        buffer=buffer,
        template_data=data,
    )
