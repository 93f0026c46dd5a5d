"""The registrar client lives in the shell so that agent and verifier share it."""

from geoattest.registrar_client import RegistrarClient

__all__ = ["RegistrarClient"]
