"""Loading the verifier's zones file (GeoJSON) once at start-up."""

from __future__ import annotations

import logging

from geoattest.errors import ConfigurationError, ZoneInvalid
from geoattest.settings import Settings
from geofence import ZoneSet, load_zones

log = logging.getLogger(__name__)


def load_zones_file(settings: Settings) -> ZoneSet | None:
    """The zones location policies may name; None when no ``zones_file`` is configured.

    Raises ``ConfigurationError`` when the file cannot be read or holds invalid geometry (and
    ``zones_repair`` is off): a verifier must not start with zones it cannot decide on.
    """
    if settings.zones_file is None:
        return None
    try:
        text = settings.zones_file.read_text(encoding="utf-8")
        zones = load_zones(text, repair=settings.zones_repair)
    except OSError as e:
        raise ConfigurationError(f"zones file {settings.zones_file}: {e}") from e
    except ZoneInvalid as e:
        raise ConfigurationError(f"zones file {settings.zones_file}: {e.message}") from e
    for repaired in zones.repaired:
        log.warning("zone repaired on load: %s", repaired)
    return zones
