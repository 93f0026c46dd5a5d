"""The root of the hierarchy: a stable ``code`` and HTTP status, and the API's error body."""

from __future__ import annotations

from typing import ClassVar


class GeoattestError(Exception):
    """Root of every error geoattest raises on purpose."""

    code: ClassVar[str] = "internal_error"
    http_status: ClassVar[int] = 500

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def to_dict(self) -> dict[str, dict[str, str]]:
        """The JSON error body of the API: ``{"error": {"code", "message"}}``."""
        return {"error": {"code": self.code, "message": self.message}}
