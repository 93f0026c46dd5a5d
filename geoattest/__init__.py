"""geoattest."""
