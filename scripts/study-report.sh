#!/usr/bin/env bash
# The SmolLM2 study's secure check and quality-vs-cost chart: every split file the study
# wrote in DIR (full.marill, the baseline, and one per variant) runs secure generation in
# each SETTING (a 16-token prompt, 2 tokens; the tokens are checked against the plaintext
# model), the cost lines go to DIR/costs.jsonl, and `report` joins them with DIR/study.json
# into the tables, DIR/report.json and DIR/quality-cost.png/.svg.
#
#   scripts/study-report.sh DIR [SETTINGS]      (SETTINGS: default "dealer rep3")
set -euo pipefail
cd "$(dirname "$0")/.."
dir=${1:?usage: scripts/study-report.sh DIR [SETTINGS]}
settings=${2:-dealer rep3}
[ -f "$dir/study.json" ] || { echo "no $dir/study.json: run marill-train study --out $dir first" >&2; exit 1; }
[ -f "$dir/full.marill" ] || { echo "no $dir/full.marill (the baseline)" >&2; exit 1; }
cargo build --release -q -p marill-benches --bin cost --bin report
: >"$dir/costs.jsonl"
failed=()
for f in "$dir"/*.marill; do
    case $f in *.client.marill) continue ;; esac
    for s in $settings; do
        echo "secure generation: $(basename "$f") in $s" >&2
        if ! target/release/cost --protocol "$s" --op model --model "$f" --prompt-len 16 --gen 2 --no-warm-up \
            --json >>"$dir/costs.jsonl"; then
            failed+=("$(basename "$f") in $s")
        fi
    done
done
target/release/report --quality "$dir/study.json" --costs "$dir/costs.jsonl" --out "$dir"
status=0
if grep -q '"token_mismatches":[1-9]' "$dir/costs.jsonl"; then
    echo "some secure tokens differ from the plaintext model's (see $dir/costs.jsonl)" >&2
    status=1
fi
if [ ${#failed[@]} -gt 0 ]; then
    echo "secure generation failed: ${failed[*]}" >&2
    status=1
fi
exit $status
