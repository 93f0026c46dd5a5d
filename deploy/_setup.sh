# Shared set-up for deploy/quickstart and deploy/test (sourced, not run).
# Installs what is missing and nothing else: Debian packages, a .venv, the project (editable).
# Idempotent: a second run checks and skips. Needs root (or sudo) only when packages are missing.

set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${GEOATTEST_VENV:-$REPO_ROOT/.venv}"
PYTHON="${GEOATTEST_PYTHON:-python3}"
# The versions CI last passed with (see its header); the project's own ranges stay in pyproject.
CONSTRAINTS="$REPO_ROOT/deploy/constraints.txt"

APT_PACKAGES=(
  swtpm swtpm-tools tpm2-tools libtss2-dev pkg-config gcc
  python3-venv python3-dev redis-server gpsd gpsd-clients python3-gps
  libpango-1.0-0 libpangoft2-1.0-0 fonts-dejavu-core poppler-utils
)
# deploy/test also needs PostgreSQL (the test fixture runs its own throwaway cluster); the package
# brings its client (postgresql-client-<N>: psql) as a dependency.
# chromium: the dashboard's browser test (Playwright); redis-sentinel: the Redis failover tests.
TEST_APT_PACKAGES=(postgresql chromium redis-sentinel)

say() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else
    echo "error: need root (or sudo) to run: $*" >&2; exit 1
  fi
}

install_system_packages() {
  local missing=() extra=("$@") pkg
  for pkg in "${APT_PACKAGES[@]}" "${extra[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
  done
  if [ ${#missing[@]} -eq 0 ]; then
    say "system packages present"
    return
  fi
  say "installing Debian packages: ${missing[*]}"
  as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
}

# redis-server, swtpm, gpsd and PostgreSQL are started by the project itself (test fixtures,
# quickstart) on free loopback ports; the system daemons the packages may start (Debian's
# postgresql creates and starts a "main" cluster) are neither needed nor touched.

install_python_project() {
  local extras="$1" stamp want
  if [ ! -x "$VENV/bin/python" ]; then
    say "creating virtualenv $VENV"
    "$PYTHON" -m venv "$VENV"
  fi
  stamp="$VENV/.geoattest-install"
  want="$extras $(cat "$REPO_ROOT/pyproject.toml" "$CONSTRAINTS" | sha256sum | cut -d' ' -f1)"
  if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
    say "python packages up to date ($VENV)"
    return
  fi
  say "installing geoattest${extras:+[$extras]} into $VENV (first time takes a few minutes: tpm2-pytss compiles)"
  "$VENV/bin/python" -m pip install --quiet --upgrade pip
  "$VENV/bin/python" -m pip install --quiet -c "$CONSTRAINTS" -e "$REPO_ROOT${extras:+[$extras]}"
  echo "$want" > "$stamp"
}

# The dashboard's map library comes from the npm registry at build time (deploy/build-dashboard:
# npm ci against the committed lockfile); the built files are not committed.
# npm may come from another nodejs package than Debian's own: only a missing npm is installed.
build_dashboard() {
  if ! command -v npm >/dev/null; then
    say "installing Debian package: npm"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends npm
  fi
  "$REPO_ROOT/deploy/build-dashboard"
}
