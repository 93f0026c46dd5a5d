"""Owner-only state on disk: directories 0700, files 0600, checked before anything is served.

The services keep secrets in files (the registrar's enrolment key, the agent's TLS key) and in
the SQLite database. Whoever can read them can act as the service, so every state directory and
private file a service creates is owner-only, and at start-up each service refuses (with a
``ConfigurationError`` naming the path and its mode) a path that another user could read or
write, or that belongs to another user. A service never loosens or silently tightens an
operator's existing path: it says what to run instead.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from geoattest.errors import ConfigurationError

PRIVATE_DIR_MODE = 0o700
PRIVATE_FILE_MODE = 0o600

__all__ = [
    "check_private",
    "create_private_file",
    "ensure_private_dir",
    "load_or_create_secret",
]


def check_private(path: Path) -> None:
    """Refuse ``path`` unless it is owned by this process's user and closed to group and others.

    Raises ``ConfigurationError`` naming the path, its mode and the fix when any group or other
    permission bit is set, or when another user owns it; also when it cannot be inspected.
    """
    try:
        info = path.stat()
    except OSError as e:
        raise ConfigurationError(f"cannot inspect {path}: {e.strerror or e}") from e
    wanted = PRIVATE_DIR_MODE if stat.S_ISDIR(info.st_mode) else PRIVATE_FILE_MODE
    mode = stat.S_IMODE(info.st_mode)
    if mode & 0o077:
        raise ConfigurationError(
            f"{path} has mode {mode:04o}, which lets other users read or change it; it must be "
            f"owner-only ({wanted:04o}): chmod {wanted:o} {path}"
        )
    if info.st_uid != os.geteuid():
        raise ConfigurationError(
            f"{path} belongs to uid {info.st_uid}, not to this service's user (uid "
            f"{os.geteuid()}); chown it or run the service as its owner"
        )


def ensure_private_dir(path: Path) -> Path:
    """Create ``path`` and any missing parents with mode 0700, then check ``path`` itself.

    Parents that already exist are the operator's and are left as they are (a 0600 file or a
    0700 directory inside protects itself). Raises ``ConfigurationError`` (see
    ``check_private``) or when the directory cannot be created.
    """
    missing = [p for p in (path, *path.parents) if not p.exists()]
    for directory in reversed(missing):
        try:
            directory.mkdir(mode=PRIVATE_DIR_MODE)
        except FileExistsError:
            pass  # created by a concurrent start: checked below like any existing one
        except OSError as e:
            raise ConfigurationError(f"cannot create {directory}: {e.strerror or e}") from e
        else:
            os.chmod(directory, PRIVATE_DIR_MODE)  # mkdir's mode is masked by the umask only
    check_private(path)
    return path


def create_private_file(path: Path, data: bytes = b"") -> bool:
    """Create ``path`` with mode 0600 holding ``data``, unless it exists; ``True`` if created.

    The file is opened with ``O_CREAT | O_EXCL`` and mode 0600, so it is never readable by
    others even for an instant, and an existing file is never overwritten.
    """
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_FILE_MODE)
    except FileExistsError:
        return False
    except OSError as e:
        raise ConfigurationError(f"cannot create {path}: {e.strerror or e}") from e
    with os.fdopen(fd, "wb") as out:
        out.write(data)
        out.flush()
        os.fsync(out.fileno())
    return True


def load_or_create_secret(path: Path, size: int) -> bytes:
    """The ``size`` random bytes kept in ``path``, created (0600, in a 0700 directory) on first use.

    Raises ``ConfigurationError`` when the directory or file is not owner-only, or the file does
    not hold exactly ``size`` bytes (truncated or foreign content is never used as a key).
    """
    ensure_private_dir(path.parent)
    if create_private_file(path, os.urandom(size)):
        return path.read_bytes()
    check_private(path)
    try:
        secret = path.read_bytes()
    except OSError as e:
        raise ConfigurationError(f"cannot read {path}: {e.strerror or e}") from e
    if len(secret) != size:
        raise ConfigurationError(
            f"{path} holds {len(secret)} bytes, not a {size}-byte key: restore it from a backup, "
            "or remove it to have a new one created"
        )
    return secret
