#!/usr/bin/env bash
# Create ./.venv (if needed) with a Python that Scipion can run on, and install
# the plugin with its test extras. Called by `make demo` and `make test`.
#
# Scipion's pwem imports tkinter at import time (no display is needed), so the
# interpreter must have it: Debian's /usr/bin/python3 does not until the
# python3-tk package is installed. We pick the first Python 3.9-3.12 with
# tkinter; failing that, as root with apt-get, we install python3-tk (and
# python3-venv); otherwise we stop with the command to run.
set -euo pipefail
VENV=${VENV:-.venv}
STAMP="$VENV/.xmipp-qc-installed"

usable() {  # $1 = interpreter: Python 3.9-3.12 with tkinter and venv
    "$1" - <<'PY' >/dev/null 2>&1
import sys, tkinter, venv
assert (3, 9) <= sys.version_info[:2] <= (3, 12)
PY
}

find_python() {
    local p
    for p in ${PYTHON:-} python3.11 python3.10 python3.12 python3.9 python3; do
        if command -v "$p" >/dev/null 2>&1 && usable "$(command -v "$p")"; then
            command -v "$p"; return 0
        fi
    done
    return 1
}

if [ -x "$VENV/bin/python" ] && ! usable "$VENV/bin/python"; then
    echo "Existing $VENV cannot run Scipion (no tkinter or unsupported Python): recreating it."
    rm -rf "$VENV"
fi

if [ ! -x "$VENV/bin/python" ]; then
    if ! PY=$(find_python); then
        if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
            echo "No Python 3.9-3.12 with tkinter found: installing python3-tk with apt-get."
            apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-tk python3-venv >/dev/null
        fi
        PY=$(find_python) || {
            echo "ERROR: Scipion needs a Python 3.9-3.12 with tkinter (no display needed)." >&2
            echo "On Debian/Ubuntu: sudo apt-get install python3-tk python3-venv; then rerun." >&2
            exit 1
        }
    fi
    echo "Creating $VENV with $PY ($("$PY" --version 2>&1))"
    "$PY" -m venv "$VENV"
    rm -f "$STAMP"
fi

old_setuptools() {  # setup.py needs setuptools >= 77 (venvs made before it was added)
    ! "$VENV/bin/python" -c 'import setuptools, sys; sys.exit(int(setuptools.__version__.split(".")[0]) < 77)' 2>/dev/null
}

if [ ! -f "$STAMP" ] || [ pyproject.toml -nt "$STAMP" ] || old_setuptools; then
    # setuptools >= 77 reads pyproject.toml, also for `python setup.py` (setup.py);
    # < 81 keeps pkg_resources, which Scipion plugins still import
    "$VENV/bin/python" -m pip install --quiet --upgrade pip "setuptools>=77,<81"
    "$VENV/bin/python" -m pip install --quiet -e '.[test]'
    touch "$STAMP"
fi
