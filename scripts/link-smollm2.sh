#!/usr/bin/env bash
# SmolLM2-135M at LF = 0.5 as processes over an emulated network: for each setting, the
# server, the helper (3PC) or dealer (2PC-Dealer) and the client run as processes on
# loopback with `--link LINK` (lan: 16 Gbps, 0.1 ms round trip; wan: 400 Mbps, 40 ms; or
# RTT_MS,MBPS), a 64-token prompt, GEN tokens; prints the client's line: total time, time
# to the first token, its bytes and rounds. Plaintext TCP: loopback measurements only.
#
#   scripts/link-smollm2.sh [LINK] [GEN] [SETTINGS]     (defaults: wan 3 "dealer rep3")
set -euo pipefail
cd "$(dirname "$0")/.."
link=${1:-wan}
gen=${2:-3}
settings=${3:-dealer rep3}
cargo build --release -q -p marill-std --bin marill
cargo build --release -q -p marill-train --bin marill-train
dir=.cache/marill/link-smollm2
mkdir -p "$dir"
server=$dir/lf0.5.marill
client=$dir/lf0.5.client.marill
if [ ! -f "$server" ]; then
    target/release/marill-train export --gguf "$(scripts/fetch-smollm2.sh)" --lf 0.5 --out "$server" >&2
fi
target/release/marill extract-public "$server" -o "$client" >/dev/null
# 64 token ids of ordinary text (the ids do not matter to the cost; the tokens are checked
# against `marill plain` below).
prompt=$(seq 1000 17 2071 | head -n 64 | tr '\n' ' ')
source scripts/parties.sh
want=$(target/release/marill plain --model "$server" --prompt "$prompt" --gen "$gen")
for setting in $settings; do
    third=helper
    [ "$setting" = dealer ] && third=dealer
    common=(--insecure-plaintext --link "$link" --timeout 600 --threads "$party_threads")
    saddr=$(start "$dir/serve.log" target/release/marill serve --model "$server" --listen 127.0.0.1:0 \
        --setting "$setting" --sessions 1 "${common[@]}")
    haddr=$(start "$dir/$third.log" target/release/marill "$third" --model "$client" --listen 127.0.0.1:0 \
        --server "$saddr" --sessions 1 "${common[@]}")
    got=$(target/release/marill client --model "$client" --server "$saddr" --helper "$haddr" --setting "$setting" \
        --prompt "$prompt" --gen "$gen" "${common[@]}" 2>"$dir/client.err")
    same=$([ "$(echo $got)" = "$(echo $want)" ] && echo "same tokens as marill plain" || echo "TOKENS DIFFER: $got vs $want")
    printf '%-7s link %s: %s (%s)\n' "$setting" "$link" "$(sed -n 's/^marill client: //p' "$dir/client.err")" "$same"
    wait "${pids[@]}"
    pids=()
done
