# Sourced by the scripts that run the parties as background processes (demo.sh,
# link-smollm2.sh): `start LOG CMD...` runs a listening party, waits for its
# `listening on ADDR` line and echoes ADDR; every party started is killed on exit.
pids=()
# The parties share this machine: each gets its share of the cores for its kernels
# (`--threads`; a party on its own machine would take them all, the default).
party_threads=$(( $(nproc) / 3 ))
[ "$party_threads" -ge 1 ] || party_threads=1
cleanup() { for p in "${pids[@]:-}"; do kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT

start() {
    local log=$1; shift
    "$@" >"$log" 2>"$log.err" &
    pids+=($!)
    for _ in $(seq 1 300); do
        if grep -q '^listening on ' "$log" 2>/dev/null; then
            sed -n 's/^listening on //p' "$log" | head -n1
            return 0
        fi
        sleep 0.1
    done
    echo "party did not start: $*" >&2
    cat "$log.err" >&2
    return 1
}
