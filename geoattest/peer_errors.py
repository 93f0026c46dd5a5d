"""What went wrong talking to a peer service, in one line a person can act on.

Used by the command-line clients of the registrar and the verifier. Two mistakes are common and
read badly as raw exceptions: an ``https://`` URL to a server that speaks plain HTTP (or the
other way round), and the URL of one service given for another (the registrar's URL pointing at
the verifier answered with forty validation errors, or with an empty list). ``transport_problem``
names the first; ``wrong_service`` reads the ``X-Geoattest-Service`` header every answer of our
services carries (``geoattest.health``) and names the second. Both stay reachability faults for
the caller (``RegistrarUnreachable``, ``VerifierUnreachable``): a peer that does not speak our
protocol is never an integrity failure.
"""

from __future__ import annotations

import requests

SERVICE_HEADER = "X-Geoattest-Service"  # geoattest.health.SERVICE_HEADER (health imports flask)


def transport_problem(error: requests.RequestException) -> str:
    """A short reason for a failed request, with a hint where the cause is a common mistake."""
    text = str(error)
    if isinstance(error, requests.exceptions.SSLError):
        if "WRONG_VERSION_NUMBER" in text or "wrong version number" in text:
            return "it does not speak TLS (an https:// URL to a plain-HTTP server: use http://)"
        if "CERTIFICATE_VERIFY_FAILED" in text:
            return "its TLS certificate is not trusted by this host (CERTIFICATE_VERIFY_FAILED)"
        return f"TLS failed: {_last_reason(text)}"
    if isinstance(error, requests.exceptions.ConnectionError):
        if "RemoteDisconnected" in text or "BadStatusLine" in text:
            return "it closed the connection without an HTTP answer (a TLS server at http://?)"
        if "Connection refused" in text:
            return "connection refused (is it running, on this port?)"
        return f"cannot connect: {_last_reason(text)}"
    if isinstance(error, requests.exceptions.Timeout):
        return "no answer in time"
    return _last_reason(text)


def wrong_service(
    response: requests.Response, base: str, expected: str, setting: str
) -> str | None:
    """A one-line message when ``response`` came from another of our services than
    ``expected``; None when it came from ``expected`` or does not say."""
    actual = response.headers.get(SERVICE_HEADER)
    if not actual or actual == expected:
        return None
    return f"{base} is the {actual[:40]}, not the {expected}: point {setting} at the {expected}"


def _last_reason(text: str) -> str:
    # urllib3 nests the useful part at the end: "...(Caused by X('...: [Errno 111] ...'))"
    reason = text.rsplit(": ", 1)[-1].strip("')\" ")
    return reason[:200] or text[:200]
