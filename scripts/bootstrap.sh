#!/usr/bin/env bash
# Shared by ./leadflow and ./test (sourced; they call sync_env).
# Needs only Python 3.11+ and git; everything else comes from PyPI into this checkout.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
UV_VERSION="0.13.9"

find_python() {
  for candidate in python3.13 python3.12 python3.11 python3; do
    # The interpreter's own path (not a pyenv shim), so every uv call agrees on the venv.
    if command -v "$candidate" >/dev/null 2>&1 &&
      "$candidate" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' 2>/dev/null; then
      "$candidate" -c 'import sys; print(sys.executable)'
      return 0
    fi
  done
  echo "leadflow needs Python 3.11 or newer on PATH" >&2
  return 1
}

ensure_uv() {
  if command -v uv >/dev/null 2>&1; then
    UV="$(command -v uv)"
    return 0
  fi
  local tools="$ROOT/.tools"
  if [ ! -x "$tools/bin/uv" ]; then
    echo "installing uv $UV_VERSION into $tools (one time)…" >&2
    "$(find_python)" -m venv "$tools"
    "$tools/bin/python" -m pip install --quiet --disable-pip-version-check "uv==$UV_VERSION"
  fi
  UV="$tools/bin/uv"
}

# sync_env [uv sync options]: find or install uv, then sync the locked environment. In a
# subshell: the caller stays in its directory (`./leadflow enrich leads.csv` means the
# leads.csv where the user is).
sync_env() {
  ensure_uv
  export UV_PYTHON="${UV_PYTHON:-$(find_python)}"
  (cd "$ROOT" && "$UV" sync --frozen --quiet "$@")
}
