"""A private EK-certificate CA made with swtpm_localca (the test "TPM manufacturer")."""

from __future__ import annotations

import logging
import shutil
from dataclasses import dataclass
from pathlib import Path

from geoattest.dev.swtpm._tools import require_binary, run_tool, write_if_changed

logger = logging.getLogger(__name__)

# TPM identity passed to swtpm_localca when it is run only to create the CA (the values swtpm_setup
# passes for swtpm 0.7).
_SPEC_ARGS = (
    "--tpm-spec-family", "2.0", "--tpm-spec-level", "0", "--tpm-spec-revision", "164",
    "--tpm-manufacturer", "id:00001014", "--tpm-model", "swtpm", "--tpm-version", "id:20191023",
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class SwtpmCa:
    """A private EK-certificate CA in ``directory`` (root + issuing CA, made by swtpm_localca)."""

    directory: Path

    @property
    def root_cert(self) -> Path:
        """PEM of the self-signed root CA."""
        return self.directory / "swtpm-localca-rootca-cert.pem"

    @property
    def issuer_cert(self) -> Path:
        """PEM of the intermediate CA that signs EK and platform certificates."""
        return self.directory / "issuercert.pem"

    @property
    def trust_store(self) -> tuple[Path, Path]:
        """The certificates a registrar must trust to accept this CA's TPMs (root, issuer)."""
        return (self.root_cert, self.issuer_cert)

    @property
    def localca_config(self) -> Path:
        return self.directory / "swtpm-localca.conf"

    @property
    def localca_options(self) -> Path:
        return self.directory / "swtpm-localca.options"

    @property
    def setup_config(self) -> Path:
        """The ``swtpm_setup --config`` file that routes certificate creation to this CA."""
        return self.directory / "swtpm_setup.conf"

    @classmethod
    def create(cls, directory: Path) -> SwtpmCa:
        """Create (or reuse) the CA in ``directory``: config files, root and issuing certificate.

        Idempotent: an existing CA's keys are kept. Raises ConfigurationError when swtpm_localca is
        missing or fails.
        """
        directory = directory.resolve()
        directory.mkdir(parents=True, exist_ok=True)
        ca = cls(directory)
        ca._write_configs()
        if not (ca.root_cert.exists() and ca.issuer_cert.exists()):
            ca._issue_dummy_ek_cert()
            logger.info("created swtpm test CA in %s", directory)
        return ca

    def _write_configs(self) -> None:
        d = self.directory
        write_if_changed(
            self.localca_config,
            f"statedir = {d}\nsigningkey = {d}/signkey.pem\n"
            f"issuercert = {self.issuer_cert}\ncertserial = {d}/certserial\n",
        )
        write_if_changed(
            self.localca_options,
            "--platform-manufacturer geoattest\n--platform-version 2.1\n--platform-model swtpm\n",
        )
        write_if_changed(
            self.setup_config,
            f"create_certs_tool = {require_binary('swtpm_localca')}\n"
            f"create_certs_tool_config = {self.localca_config}\n"
            f"create_certs_tool_options = {self.localca_options}\n"
            "active_pcr_banks = sha256\n",
        )

    def _issue_dummy_ek_cert(self) -> None:
        """swtpm_localca creates its CA on first use: issue one certificate for a throwaway key."""
        from cryptography.hazmat.primitives.asymmetric import ec

        numbers = ec.generate_private_key(ec.SECP256R1()).public_key().public_numbers()
        scratch = self.directory / "bootstrap"
        scratch.mkdir(exist_ok=True)
        try:
            argv = [
                require_binary("swtpm_localca"), "--type", "ek", "--tpm2",
                "--ek", f"x={numbers.x:064x},y={numbers.y:064x}", "--dir", str(scratch),
                "--configfile", str(self.localca_config), "--optsfile", str(self.localca_options),
                *_SPEC_ARGS,
            ]  # fmt: skip
            run_tool(argv, f"swtpm_localca creating the CA in {self.directory}")
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
