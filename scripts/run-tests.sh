#!/usr/bin/env bash
# The README's test command (`make test`): ruff, then pytest, with every service
# the tests need started first and stopped by PID at the end, also when tests fail.
#
# Each scripts/services/<name>.sh is sourced and defines `<name>_start` (installs
# its system packages when root and missing, starts the daemons in the
# background, exports what the tests need, e.g. DISPLAY) and `<name>_stop`
# (kills the PIDs it started). Under CI a service that cannot start fails the run.
set -euo pipefail
VENV=${VENV:-.venv}
BIN="$VENV/bin"

"$BIN/ruff" check .

STARTED=()
stop_services() {
    local i
    for ((i = ${#STARTED[@]} - 1; i >= 0; i--)); do
        "${STARTED[i]}_stop" || true
    done
}
trap stop_services EXIT

for svc in scripts/services/*.sh; do
    [ -e "$svc" ] || continue
    name=$(basename "$svc" .sh)
    # shellcheck source=/dev/null
    source "$svc"
    if "${name}_start"; then
        STARTED+=("$name")
    elif [ -n "${CI:-}" ]; then
        echo "ERROR: service '$name' could not start (see above); CI needs it." >&2
        exit 1
    else
        echo "WARNING: service '$name' could not start; the tests that need it will skip." >&2
    fi
done

"$BIN/python" -m pytest "$@"
