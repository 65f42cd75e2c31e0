# shellcheck shell=bash
# Sourced by scripts/test, scripts/demo and .ci/run: makes the Python side ready on a clean
# Debian/Ubuntu machine, idempotently. Afterwards: cwd = repo root, $ROOT, $VENV, $STATE are set
# and .venv holds the project (editable) with its dev dependencies pinned by constraints.txt.
# The services (Kafka, PostgreSQL, Redis) are scripts/stack's job, not this file's.

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
VENV="$ROOT/.venv"
# Same defaults as scripts/stack, so worker logs sit next to the services' logs.
STATE="${TENANT_STACK_STATE:-${TENANT_STACK_CACHE:-$HOME/.cache/tenant-service}/state}"
export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1 DEBIAN_FRONTEND=noninteractive
cd "$ROOT"

setup_log() { printf '[setup] %s\n' "$*" >&2; }
setup_die() { printf '[setup] ERROR: %s\n' "$*" >&2; exit 1; }

_setup_apt_updated=0
setup_apt_install() {  # installs only the packages that are missing
  local missing=() p
  for p in "$@"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
  ((${#missing[@]})) || return 0
  command -v apt-get >/dev/null || setup_die "need ${missing[*]}, and apt-get is not available"
  ((EUID == 0)) || setup_die "need root to apt-get install ${missing[*]}"
  if ((_setup_apt_updated == 0)); then setup_log "apt-get update"; apt-get update -qq >&2; _setup_apt_updated=1; fi
  setup_log "apt-get install -y ${missing[*]}"
  apt-get install -y -qq "${missing[@]}" >&2
}

setup_python() {
  command -v python3 >/dev/null || setup_apt_install python3
  python3 -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
    || setup_die "Python >= 3.11 is required, found $(python3 --version 2>&1)"
  # Debian splits venv/ensurepip out of python3 into python3.X-venv.
  if ! python3 -c 'import ensurepip, venv' >/dev/null 2>&1; then
    setup_apt_install "python3.$(python3 -c 'import sys; print(sys.version_info.minor)')-venv"
  fi
}

setup_venv() {
  if [[ ! -x "$VENV/bin/python" ]] || ! "$VENV/bin/python" -c 'import sys' >/dev/null 2>&1; then
    setup_log "creating $VENV"
    rm -rf "$VENV"
    python3 -m venv "$VENV"
  fi
  # pip install is idempotent but slow (the editable build needs setuptools from PyPI): skip it
  # while pyproject.toml and constraints.txt are unchanged since the last successful install.
  local stamp="$VENV/.tenant-service-deps" want
  want=$(cat "$ROOT/pyproject.toml" "$ROOT/constraints.txt" | sha256sum | cut -d' ' -f1)
  if [[ "$(cat "$stamp" 2>/dev/null)" == "$want" && -x "$VENV/bin/tenantctl" && -x "$VENV/bin/pytest" ]]; then
    return 0
  fi
  setup_log "pip install -c constraints.txt -e '.[dev]'"
  "$VENV/bin/pip" install -q -c "$ROOT/constraints.txt" -e "$ROOT[dev]" >&2
  echo "$want" > "$stamp"
}

# The operator console's browser test drives Debian's chromium (playwright never downloads one).
setup_browser() {
  [[ -x /usr/bin/chromium ]] || setup_apt_install chromium
}

setup_python
setup_venv
setup_browser
