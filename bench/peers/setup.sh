#!/usr/bin/env bash
# Builds bench/.venv-peers: Keylime (the peer of bench/bench_ima.py) in its own environment.
#
# The keylime PyPI package declares no dependencies at all, yet keylime.ima.ima imports
# cryptography, packaging, pyyaml, jsonschema, lark and GPGME's `gpg` module (keylime.signing).
# `gpg` is not installable from PyPI without GPGME headers and SWIG, so we take Debian's
# python3-gpg (built for Python 3.11) and link only that package into the venv.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
venv="$here/../.venv-peers"
python="${PYTHON:-python3.11}"

if [ ! -x "$venv/bin/python" ]; then
    "$python" -m venv "$venv"
fi
"$venv/bin/pip" install --quiet --disable-pip-version-check \
    "keylime==7.14.3" pyyaml jsonschema lark cryptography packaging

if ! "$venv/bin/python" -c "import gpg" 2>/dev/null; then
    if [ ! -d /usr/lib/python3/dist-packages/gpg ]; then
        if [ "$(id -u)" = 0 ]; then
            apt-get install -y python3-gpg >/dev/null || { apt-get update >/dev/null && apt-get install -y python3-gpg >/dev/null; }
        else
            echo "setup.sh: need Debian's python3-gpg (sudo apt-get install python3-gpg)" >&2
            exit 1
        fi
    fi
    site="$("$venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
    ln -sfn /usr/lib/python3/dist-packages/gpg "$site/gpg"
fi

"$venv/bin/python" -c "import keylime.ima.ima" 2>/dev/null
echo "peers ready: $venv"
