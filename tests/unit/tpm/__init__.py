"""Unit tests of the pure tpm package."""
