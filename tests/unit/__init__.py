"""Unit tests of the pure packages: no services."""
