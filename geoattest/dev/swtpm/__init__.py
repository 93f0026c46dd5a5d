"""swtpm tooling for development, tests and ``deploy/quickstart``: a private manufacturer CA and
software TPMs whose EK certificates it issues.

- ``SwtpmCa``: a test "TPM manufacturer" made with ``swtpm_localca`` configured into one directory.
  Its root certificate and issuing certificate form the trust store a registrar is given.
- ``SwtpmInstance``: one swtpm state directory, manufactured with ``swtpm_setup`` (EK + platform
  certificates signed by a ``SwtpmCa``, NVRAM locked), and served on a loopback TCP port pair;
  stopped with TPM2_Shutdown first (``shutdown``), so restarts never count toward DA lockout.
- ``lockout`` (imported on its own: it needs tpm2-pytss): the DA counters, and their reset on a
  dev TPM.

This is not production code: production nodes talk to ``/dev/tpmrm0``. Nothing here weakens a check;
it makes a TPM with a real certificate chain.
"""

from geoattest.dev.swtpm._tools import LOOPBACK, free_port_pair, require_binary
from geoattest.dev.swtpm.ca import SwtpmCa
from geoattest.dev.swtpm.instance import SwtpmInstance

__all__ = ["LOOPBACK", "SwtpmCa", "SwtpmInstance", "free_port_pair", "require_binary"]
