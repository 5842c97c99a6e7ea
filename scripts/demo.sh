#!/usr/bin/env bash
# The MARILL pipeline on the embedded default, end to end:
#   1. pretrain the tiny base (cached in .cache/marill/base) and fine-tune the baseline and
#      the MARILL variants with distillation (marill-train pipeline: quality table);
#   2. secure inference with the parties as separate processes over loopback TCP, talking
#      TLS 1.3 with keys from `marill keygen` pinned in each party's flags, in 2PC-Dealer,
#      3PC and plain 2PC, printing the secure text beside the plaintext model's;
#   3. the cost of secure generation of every variant in every setting (cost --op model)
#      and the report: cost table with improvement factors, report.json, and the
#      quality-vs-cost chart quality-cost.png / .svg.
# Output goes to ${MARILL_DEMO_DIR:-.cache/marill/demo}.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${MARILL_DEMO_DIR:-.cache/marill/demo}
bin=target/release
mkdir -p "$out"
step() { printf '\n=== %s (at %d s)\n' "$1" "$SECONDS"; }

step "build (release)"
cargo build --release -p marill-train -p marill-std -p marill-benches

step "fine-tuning (marill-train pipeline)"
"$bin/marill-train" pipeline --out "$out"

source scripts/parties.sh

step "secure inference, parties as processes over loopback TCP (TLS, pinned keys)"
# One key per role, made afresh for this run; every party pins the others' public keys.
keys=$out/keys
rm -rf "$keys"
mkdir -p "$keys"
for role in server client helper; do
    "$bin/marill" keygen --out "$keys/$role.key" >/dev/null
done
trust=(--trust-server "$keys/server.key.pub" --trust-client "$keys/client.key.pub" --trust-helper "$keys/helper.key.pub")
server_tls=(--key "$keys/server.key" "${trust[@]}")
helper_tls=(--key "$keys/helper.key" "${trust[@]}")
client_tls=(--key "$keys/client.key" "${trust[@]}")
# A request about an entity whose task examples were never fine-tuned on.
prompt=$(cat "$out/prompt.txt")
for v in full lf0.5 lora8 hm4 lf0.5+hm4 lf0.5+lora8; do
    server=$out/$v.marill
    client=$out/$v.client.marill
    "$bin/marill" extract-public "$server" -o "$client" >/dev/null
    printf '\n%s  prompt "%s"\n' "$v" "$prompt"
    printf '  %-10s %s\n' plaintext "$("$bin/marill" plain --model "$server" --text "$prompt" --gen 8)"
    for setting in dealer rep3 ot2pc; do
        saddr=$(start "$out/serve.log" "$bin/marill" serve --model "$server" --listen 127.0.0.1:0 --setting "$setting" --sessions 1 --threads "$party_threads" "${server_tls[@]}")
        helper=()
        if [ "$setting" != ot2pc ]; then
            third=helper
            [ "$setting" = dealer ] && third=dealer
            haddr=$(start "$out/$third.log" "$bin/marill" "$third" --model "$client" --listen 127.0.0.1:0 --server "$saddr" --sessions 1 --threads "$party_threads" "${helper_tls[@]}")
            helper=(--helper "$haddr")
        fi
        text=$("$bin/marill" client --model "$client" --server "$saddr" "${helper[@]}" --setting "$setting" \
            --text "$prompt" --gen 8 --threads "$party_threads" "${client_tls[@]}" 2>"$out/client.err")
        printf '  %-10s %s   (%s)\n' "$setting" "$text" "$(sed -n 's/^marill client: //p' "$out/client.err")"
        wait "${pids[@]}"
        pids=()
    done
done

step "cost of secure generation (cost --op model; prompt 16 tokens, 4 new)"
: >"$out/costs.jsonl"
for f in "$out"/*.marill; do
    case $f in *.client.marill) continue ;; esac
    "$bin/cost" --protocol all --op model --model "$f" --prompt-len 16 --gen 4 --json | tee -a "$out/costs.jsonl"
    # Plain 2PC's runs take seconds: measured without the warm-up run.
    "$bin/cost" --protocol ot2pc --op model --model "$f" --prompt-len 16 --gen 4 --no-warm-up --json | tee -a "$out/costs.jsonl"
done

step "report"
"$bin/report" --quality "$out/quality.json" --costs "$out/costs.jsonl" --out "$out"
printf '\n=== done in %d s\n' "$SECONDS"
