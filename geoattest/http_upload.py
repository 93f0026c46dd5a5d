"""Large JSON request bodies: read in chunks, gzip undone as they arrive, bounded by a limit.

The API's bodies are capped at ``geoattest.http.MAX_BODY_BYTES`` (256 KiB). A whole-system IMA
runtime policy is tens of MB of JSON (about 47 MB for 400,000 files, 18 MB gzip-compressed), so
the policy route reads its body here instead, under its own limit (a setting): the limit counts
the bytes on the wire *and* what they expand to, and is checked chunk by chunk, so neither a
large body nor a small compression bomb is buffered past it.
"""

from __future__ import annotations

import zlib

from flask import request

from geoattest.errors import BodyTooLarge, EncodingUnsupported, MalformedRequest
from geoattest.strict_json import loads_object

CHUNK_BYTES = 1 << 20
ENCODINGS = ("identity", "gzip")


def read_json_upload(limit: int) -> object:
    """The request's JSON body (``Content-Type: application/json``, ``Content-Encoding``
    ``identity`` or ``gzip``), at most ``limit`` bytes before and after decompression.

    Raises ``BodyTooLarge`` (413) past the limit, ``EncodingUnsupported`` (415) for another
    encoding, ``MalformedRequest`` (400) for another content type, a corrupt or truncated gzip
    stream, or a body that is not JSON."""
    encoding = request.headers.get("Content-Encoding", "identity").strip().lower() or "identity"
    if encoding not in ENCODINGS:
        raise EncodingUnsupported(
            f"Content-Encoding {encoding[:40]!r} is not accepted here (use gzip or none)"
        )
    if request.mimetype != "application/json":
        raise MalformedRequest("request body must be JSON (Content-Type: application/json)")
    request.max_content_length = limit  # a larger Content-Length is a 413 before any read
    # The strict reader, as for every other body: no duplicate names, NaN, lone surrogates.
    return loads_object(bytes(_read(limit, gzip=encoding == "gzip")))


def _read(limit: int, *, gzip: bool) -> bytearray:
    inflater = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS) if gzip else None
    body = bytearray()

    def keep(data: bytes) -> None:
        if len(body) + len(data) > limit:
            what = "decompressed" if gzip else "the"
            raise BodyTooLarge(f"{what} body exceeds {limit} bytes (policy_upload_max_bytes)")
        body.extend(data)

    stream = request.stream
    while chunk := stream.read(CHUNK_BYTES):
        if inflater is None:
            keep(chunk)
            continue
        data = chunk
        try:
            while data:  # bounded output per step: a bomb stops at the limit
                keep(inflater.decompress(data, CHUNK_BYTES))
                data = inflater.unconsumed_tail
        except zlib.error as e:
            raise MalformedRequest(f"gzip body is corrupt: {e}") from None
        if inflater.eof and inflater.unused_data:
            raise MalformedRequest("gzip body has data after its end (one gzip member only)")
    if inflater is not None:
        try:
            keep(inflater.flush())
        except zlib.error as e:
            raise MalformedRequest(f"gzip body is corrupt: {e}") from None
        if not inflater.eof:
            raise MalformedRequest("gzip body is truncated")
    return body
