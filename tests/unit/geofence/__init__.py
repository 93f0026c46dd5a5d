"""Unit tests of geofence/ (pure: no services)."""
