# Shared set-up for the scripts: a project virtual environment with codemode installed.
# EXTRAS names the optional dependencies a script needs: unset means the dev toolset (scripts/test),
# empty means the core package alone, "console" the core with the approval console (scripts/quickstart).
# Each set has its own stamp file, so a smaller install never passes for the dev one; a dev install (a
# superset of every extra) also serves the other scripts.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
PY="${PYTHON:-python3}"
if ! "$PY" -c 'import sys; sys.exit(sys.version_info < (3, 10))' 2>/dev/null; then
    echo "codemode needs Python 3.10 or newer (set PYTHON=/path/to/python3.x)" >&2
    exit 1
fi
if [ ! -x .venv/bin/python ]; then
    "$PY" -m venv .venv
fi
EXTRAS="${EXTRAS-dev}"
stamp_fresh() { [ -f "$1" ] && [ ! pyproject.toml -nt "$1" ]; }
STAMP=".venv/.codemode-installed-${EXTRAS:-core}"
# The dev set includes every other extra, so its stamp serves every script.
if ! stamp_fresh "$STAMP" && ! stamp_fresh .venv/.codemode-installed-dev; then
    echo "Installing codemode${EXTRAS:+[$EXTRAS]} into .venv (first run only)..." >&2
    # Editable installs of a pyproject.toml-only project need pip 21.3 or newer; upgrade only an older pip.
    if ! .venv/bin/python -c 'import pip, sys; sys.exit(tuple(map(int, pip.__version__.split(".")[:2])) < (21, 3))'; then
        .venv/bin/python -m pip install --quiet --upgrade pip
    fi
    .venv/bin/python -m pip install --quiet --disable-pip-version-check -e ".${EXTRAS:+[$EXTRAS]}"
    touch "$STAMP"
fi
