"""Unit tests of the shell leaf modules and HTTP plumbing."""
