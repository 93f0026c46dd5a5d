"""Unit tests of the verifier's pure parts."""
