"""Peer implementations run in their own environment (``bench/.venv-peers``, see setup.sh)."""
