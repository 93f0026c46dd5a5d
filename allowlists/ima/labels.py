"""What an IMA entry truly is, when its template label is not covered by its template hash.

The template hash covers the template *data*, not the template name printed before it, so
whoever relays the log can relabel an entry. A relabelling keeps the hash valid only when the
data parses under both templates:

- ``ima-sig`` and ``ima-buf`` share a layout (d-ng, n-ng, then one hex field). An ``ima-sig``
  entry relabelled ``ima-buf`` would be judged as a buffer (``ignored_keyrings: ["*"]`` would let
  any file through); an ``ima-buf`` entry relabelled ``ima-sig`` as a file (a file exclude could
  hide it). The kernel's buffer digest is always the hash of the buffer (``ima_eventbuf_init``
  with the digest of ``process_buffer_measurement``), and a file's digest is never the hash of
  its own signature, so that decides: an ``ima-buf`` entry must hash its buffer to its digest; an
  ``ima-sig`` entry whose signature field hashes to its digest is a buffer in disguise. An empty
  buffer is ambiguous with an unsigned empty file, and no kernel measures an empty buffer (it
  skips them), so an empty ``ima-buf`` entry is refused when the node logs ``ima-sig``.
- Legacy ``ima`` (no length prefixes) and the others only line up when a name holds a NUL byte,
  which a kernel name (a C string) never does: ``template.parse_entry`` refuses those.

``label_problem`` says why an entry must not be allowed whatever the policy lists, or None.
Pure: no I/O.
"""

from __future__ import annotations

import hashlib

from allowlists.ima.template import ImaEntry

__all__ = ["label_problem"]


def _hash(alg: str, data: bytes) -> bytes | None:
    """``alg``'s digest of ``data``, or None when hashlib has no such algorithm (e.g. sm3)."""
    try:
        return hashlib.new(alg, data).digest()
    except ValueError:
        return None


def label_problem(entry: ImaEntry, templates: frozenset[str]) -> str | None:
    """Why ``entry`` cannot be allowed under the node's ``templates``, or None.

    Checked: the entry's template is one the node logs; an ``ima-buf`` entry's digest is the
    hash of its buffer; an ``ima-sig`` entry is not a buffer measurement relabelled (module
    docstring). An entry whose digest algorithm cannot be computed here is ambiguous when the
    other reading is possible, and refused.
    """
    if entry.template not in templates:
        return (
            f"template {entry.template} is not among the templates this node logs "
            f"({', '.join(sorted(templates))}): the label is not covered by the template hash"
        )
    if entry.is_violation:
        return None  # judged as a violation event (allow_violations), never by its fields
    if entry.template == "ima-buf":
        buffer = entry.buffer or b""
        if not buffer and "ima-sig" in templates:
            return "ima-buf entry with an empty buffer: as ambiguous as an unsigned empty file"
        if _hash(entry.digest_alg, buffer) != entry.digest:
            return (
                "ima-buf entry whose digest is not the hash of its buffer: not a buffer "
                "measurement (an ima-sig entry relabelled?)"
            )
    elif entry.template == "ima-sig" and entry.signature:
        computed = _hash(entry.digest_alg, entry.signature)
        if computed == entry.digest or (computed is None and "ima-buf" in templates):
            return (
                "ima-sig entry whose signature field hashes to its digest: a buffer "
                "measurement relabelled as a signed file"
            )
    return None
