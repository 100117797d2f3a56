# Sourced by benches/run.sh and benches/uws/compare.sh: start one broker
# under test pinned to $SERVER_CPU (sets PORT and SERVER_PID once it is
# listening), stop it, and stop it on exit whatever happens.

SERVER_CPU=${SERVER_CPU:-0}
PORT_RINGFAN=${PORT_RINGFAN:-9310}
PORT_BASELINE=${PORT_BASELINE:-9311}
PORT_UWS=${PORT_UWS:-9312}
SERVER_PID=

start() { # broker: ringfan | baseline | uws
    local log
    log=$(mktemp)
    case $1 in
    ringfan)
        local bin=${RINGFAN_BIN:-target/release/ringfan} echo=()
        # /echo (the echo scenario) is off unless --echo; a "before" binary
        # from when it was on by default has no such flag.
        if "$bin" --help | grep -qE -- '^ +--echo\b'; then echo=(--echo); fi
        taskset -c "$SERVER_CPU" "$bin" --listen "127.0.0.1:$PORT_RINGFAN" --shards 1 "${echo[@]}" >"$log" 2>&1 &
        PORT=$PORT_RINGFAN ;;
    baseline)
        taskset -c "$SERVER_CPU" target/release/ringfan-baseline --listen "127.0.0.1:$PORT_BASELINE" --threads 1 >"$log" 2>&1 &
        PORT=$PORT_BASELINE ;;
    uws)
        taskset -c "$SERVER_CPU" benches/uws/venv/bin/python benches/uws/server.py --port "$PORT_UWS" >"$log" 2>&1 &
        PORT=$PORT_UWS ;;
    *)
        echo "start: no broker named $1" >&2
        exit 2 ;;
    esac
    SERVER_PID=$!
    for _ in $(seq 100); do
        grep -q "listening on" "$log" && return 0
        sleep 0.1
    done
    echo "$0: $1 did not start:" >&2
    cat "$log" >&2
    exit 1
}

stop() {
    [[ -n "$SERVER_PID" ]] || return 0
    kill -TERM "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
    SERVER_PID=
}
trap stop EXIT
