"""Loading the verifier's zones file (GeoJSON) once at start-up."""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass

from geoattest.errors import ConfigurationError, ZoneGeometryInvalid, ZoneInvalid
from geoattest.settings import Settings
from geofence import ZoneSet, load_zones

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class LoadedZones:
    zones: ZoneSet
    sha256: bytes  # of the file's bytes: evidence records name the zones they were judged by
    data: bytes  # the file's bytes (kept by digest for residency exports)


def load_zones_file(settings: Settings) -> ZoneSet | None:
    """The zones location policies may name; None when no ``zones_file`` is configured.

    Raises ``ConfigurationError`` when the file cannot be read or holds invalid geometry (and
    ``zones_repair`` is off): a verifier must not start with zones it cannot decide on.
    """
    loaded = load_zones_with_digest(settings)
    return loaded.zones if loaded is not None else None


def load_zones_with_digest(settings: Settings) -> LoadedZones | None:
    """``load_zones_file`` and the SHA-256 of the file it read."""
    if settings.zones_file is None:
        return None
    try:
        data = settings.zones_file.read_bytes()
        zones = load_zones(data.decode("utf-8"), repair=settings.zones_repair)
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigurationError(f"zones file {settings.zones_file}: {e}") from e
    except ZoneGeometryInvalid as e:
        raise ConfigurationError(
            f"zones file {settings.zones_file}: {e.message}; set zones_repair = true "
            "(GEOATTEST_ZONES_REPAIR=1) to repair it with make_valid on load"
        ) from e
    except ZoneInvalid as e:
        raise ConfigurationError(f"zones file {settings.zones_file}: {e.message}") from e
    for repaired in zones.repaired:
        log.warning("zone repaired on load: %s", repaired)
    return LoadedZones(zones=zones, sha256=hashlib.sha256(data).digest(), data=data)
