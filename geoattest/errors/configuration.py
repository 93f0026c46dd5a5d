"""Settings or files unusable at start-up."""

from __future__ import annotations

from geoattest.errors._base import GeoattestError


class ConfigurationError(GeoattestError):
    """Settings or files given at start-up are unusable; raised before anything is served."""

    code = "configuration_error"


class PortInUse(ConfigurationError):
    """A service cannot listen: its address and port are taken (or not this host's)."""

    code = "port_in_use"
