# Virtual X display for the GUI tests (sourced by scripts/run-tests.sh).
#
# xvfb_start: installs Xvfb, xdotool, xwininfo and ImageMagick's `import` (for
#   screenshots) with apt-get when root and missing (otherwise prints the
#   command and returns 1), starts Xvfb on a free display chosen by Xvfb itself
#   (-displayfd) and exports DISPLAY.
# xvfb_stop: kills that Xvfb by its PID.

XVFB_PID=""
XVFB_DIR=""

_xvfb_missing_packages() {
    local missing=()
    command -v Xvfb >/dev/null 2>&1 || missing+=(xvfb)
    command -v xdotool >/dev/null 2>&1 || missing+=(xdotool)
    command -v xwininfo >/dev/null 2>&1 || missing+=(x11-utils)
    command -v import >/dev/null 2>&1 || missing+=(imagemagick)
    echo "${missing[*]}"
}

xvfb_start() {
    local missing
    missing=$(_xvfb_missing_packages)
    if [ -n "$missing" ]; then
        if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
            echo "xvfb: installing $missing" >&2
            DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null &&
                DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing >/dev/null ||
                { echo "xvfb: apt-get install $missing failed" >&2; return 1; }
        else
            echo "xvfb: missing $missing; install with: sudo apt-get install -y $missing" >&2
            return 1
        fi
    fi
    XVFB_DIR=$(mktemp -d)
    Xvfb -displayfd 3 -screen 0 1920x1200x24 -nolisten tcp -noreset \
        3>"$XVFB_DIR/display" 2>"$XVFB_DIR/xvfb.log" &
    XVFB_PID=$!
    local i
    for ((i = 0; i < 100; i++)); do
        if [ -s "$XVFB_DIR/display" ]; then
            export DISPLAY=":$(tr -dc '0-9' <"$XVFB_DIR/display")"
            echo "xvfb: Xvfb (pid $XVFB_PID) on DISPLAY=$DISPLAY" >&2
            return 0
        fi
        if ! kill -0 "$XVFB_PID" 2>/dev/null; then
            break
        fi
        sleep 0.1
    done
    echo "xvfb: Xvfb did not start; its log:" >&2
    cat "$XVFB_DIR/xvfb.log" >&2
    xvfb_stop
    return 1
}

xvfb_stop() {
    if [ -n "$XVFB_PID" ]; then
        kill "$XVFB_PID" 2>/dev/null || true
        wait "$XVFB_PID" 2>/dev/null || true
        echo "xvfb: stopped Xvfb (pid $XVFB_PID)" >&2
    fi
    XVFB_PID=""
    [ -n "$XVFB_DIR" ] && rm -rf "$XVFB_DIR"
    XVFB_DIR=""
}
