"""Dev tooling: the local fleet, swtpm helpers, the IMA emulator, child processes.

No service imports it (an import-linter contract in ``pyproject.toml``).
"""
