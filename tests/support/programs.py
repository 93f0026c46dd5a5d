"""Distinct real executables for workload tests: copies of this Python interpreter, each with a
few bytes appended (ELF loaders ignore trailing data), so each has its own SHA-256 and runs the
same scripts with the project importable."""

from __future__ import annotations

import hashlib
import os
import shutil
import site
import sys
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Program", "program"]

REPO = Path(__file__).resolve().parents[2]


@dataclass(frozen=True, slots=True)
class Program:
    path: Path
    sha256: bytes

    def env(self) -> dict[str, str]:
        paths = [*site.getsitepackages(), str(REPO)]
        return {**os.environ, "PYTHONPATH": os.pathsep.join(paths)}

    def argv(self, script: str, *args: str) -> list[str]:
        return [str(self.path), "-c", script, *args]


def program(directory: Path, tag: str) -> Program:
    """A copy of the interpreter named ``tag`` with ``tag`` appended to its bytes."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / tag
    shutil.copyfile(os.path.realpath(sys.executable), path)
    with path.open("ab") as f:
        f.write(f"\0geoattest-test-program:{tag}\0".encode())
    path.chmod(0o755)
    return Program(path=path, sha256=hashlib.sha256(path.read_bytes()).digest())
