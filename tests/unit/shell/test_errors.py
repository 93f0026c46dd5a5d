from __future__ import annotations

import pytest

from geoattest import errors


def _all_error_classes() -> list[type[errors.GeoattestError]]:
    return errors._all_subclasses(errors.GeoattestError)


def test_codes_are_unique_and_snake_case() -> None:
    codes = [cls.code for cls in _all_error_classes()]
    duplicated = {code for code in codes if codes.count(code) > 1}
    assert not duplicated, f"error codes used by more than one class: {duplicated}"
    for code in codes:
        assert code.isascii(), code
        assert code == code.lower(), code
        assert " " not in code, code


def test_client_errors_are_4xx_and_faults_are_5xx() -> None:
    for cls in _all_error_classes():
        if issubclass(cls, errors.RequestError):
            assert 400 <= cls.http_status < 500, cls
        if issubclass(cls, errors.ReachabilityError):
            assert cls.http_status >= 500, cls


def test_error_body_shape() -> None:
    body = errors.EkUntrusted("issuer unknown").to_dict()
    assert body == {"error": {"code": "ek_untrusted", "message": "issuer unknown"}}


@pytest.mark.parametrize(
    ("code", "cls"),
    [
        ("ek_untrusted", errors.EkUntrusted),
        ("ek_not_pinned", errors.EkNotPinned),
        ("ak_invalid", errors.AkInvalid),
        ("activation_failed", errors.ActivationFailed),
        ("agent_id_taken", errors.AgentIdTaken),
    ],
)
def test_error_from_code_rebuilds_the_class(code: str, cls: type[errors.GeoattestError]) -> None:
    rebuilt = errors.error_from_code(code, "why")
    assert type(rebuilt) is cls
    assert rebuilt.message == "why"


def test_error_from_unknown_code_keeps_code_in_message() -> None:
    rebuilt = errors.error_from_code("from_the_future", "new thing")
    assert type(rebuilt) is errors.RequestError
    assert "from_the_future" in rebuilt.message
