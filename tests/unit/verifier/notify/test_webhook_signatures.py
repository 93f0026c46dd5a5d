"""Webhook signatures: they cover body and timestamp, replays are refused, and the receiver that
docs/webhooks.md shows (run here as written) accepts exactly what the verifier signs."""

from __future__ import annotations

import datetime as dt
import http.client
import re
import threading
from collections.abc import Callable, Iterator
from http.server import HTTPServer

import pytest

from geoattest.settings import load_settings
from tests.paths import REPO_ROOT
from verifier.notify.webhooks import (
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    sign_payload,
    verify_signature,
)

SECRET = b"the webhook_secret of the verifier"  # the value the documented receiver holds
BODY = b'{"type":"agent.state_changed","id":7,"agent_id":"edge-1","to_state":"failed"}'
NOW = dt.datetime(2026, 12, 1, 10, 0, tzinfo=dt.UTC)
T = str(int(NOW.timestamp()))


def test_a_signature_verifies_only_for_its_body_time_and_secret() -> None:
    signature = sign_payload(SECRET, T, BODY)
    assert verify_signature(SECRET, T, signature, BODY, now=NOW)
    assert not verify_signature(SECRET, T, signature, BODY.replace(b"failed", b"attested"), now=NOW)
    later = str(int(T) + 1)
    assert not verify_signature(SECRET, later, signature, BODY, now=NOW)  # time is covered
    assert not verify_signature(b"another secret", T, signature, BODY, now=NOW)
    assert not verify_signature(SECRET, T, "", BODY, now=NOW)


@pytest.mark.parametrize("skew", [301, -301, 86_400])
def test_a_replayed_or_future_delivery_is_refused(skew: int) -> None:
    timestamp = str(int(T) - skew)
    signature = sign_payload(SECRET, timestamp, BODY)
    assert not verify_signature(SECRET, timestamp, signature, BODY, now=NOW)


@pytest.mark.parametrize("timestamp", ["", "-5", "1e9", "١٢٣", "9" * 40])
def test_a_timestamp_that_is_not_unix_seconds_is_refused(timestamp: str) -> None:
    signature = sign_payload(SECRET, timestamp, BODY)
    assert not verify_signature(SECRET, timestamp, signature, BODY, now=NOW)


def test_webhook_urls_without_a_strong_secret_are_refused() -> None:
    with pytest.raises(ValueError, match="webhook_secret"):
        load_settings(webhook_urls=("https://hooks.example/geoattest",))
    with pytest.raises(ValueError, match="at least 32"):
        load_settings(webhook_urls=("https://hooks.example/x",), webhook_secret="short")  # noqa: S106
    assert load_settings(webhook_urls=("https://hooks.example/x",), webhook_secret="s" * 32)


# --- the receiver of docs/webhooks.md, run as written -------------------------------------------


def _documented_receiver() -> dict[str, object]:
    text = (REPO_ROOT / "docs" / "webhooks.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.DOTALL)
    assert len(blocks) == 1, "docs/webhooks.md shows one receiver"
    namespace: dict[str, object] = {"__name__": "documented_receiver"}
    exec(compile(blocks[0], "docs/webhooks.md", "exec"), namespace)  # noqa: S102  # our own docs
    return namespace


@pytest.fixture
def receiver() -> Iterator[Callable[[dict[str, str], bytes], int]]:
    namespace = _documented_receiver()
    handler = namespace["Receiver"]
    assert isinstance(handler, type)
    server = HTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()

    def post(headers: dict[str, str], body: bytes) -> int:
        connection = http.client.HTTPConnection("127.0.0.1", server.server_port, timeout=10)
        try:
            connection.request("POST", "/", body=body, headers=headers)
            return connection.getresponse().status
        finally:
            connection.close()

    try:
        yield post
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def test_the_documented_receiver_accepts_what_the_verifier_signs(
    receiver: Callable[[dict[str, str], bytes], int],
) -> None:
    timestamp = str(int(dt.datetime.now(dt.UTC).timestamp()))
    signed = {TIMESTAMP_HEADER: timestamp, SIGNATURE_HEADER: sign_payload(SECRET, timestamp, BODY)}
    assert receiver(signed, BODY) == 204
    assert receiver(signed, BODY.replace(b"failed", b"attested")) == 401  # tampered body
    assert receiver({TIMESTAMP_HEADER: timestamp}, BODY) == 401  # unsigned
    old = str(int(timestamp) - 3600)
    replayed = {TIMESTAMP_HEADER: old, SIGNATURE_HEADER: sign_payload(SECRET, old, BODY)}
    assert receiver(replayed, BODY) == 401
    moved = {TIMESTAMP_HEADER: str(int(timestamp) + 1), SIGNATURE_HEADER: signed[SIGNATURE_HEADER]}
    assert receiver(moved, BODY) == 401
