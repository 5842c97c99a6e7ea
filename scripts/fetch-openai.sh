#!/usr/bin/env bash
# Install the `openai` Python package (openai==1.55.3 with httpx==0.28.1 and its dependencies, from PyPI) into
# .cache/marill/py, for the OpenAI-compatible endpoint's test (scripts/openai-check.py).
# Prints the directory to put on PYTHONPATH. Cached: a second run installs nothing.
set -euo pipefail
cd "$(dirname "$0")/.."
dir=.cache/marill/py
version=1.55.3
if [ -f "$dir/.openai-$version" ]; then
    echo "$PWD/$dir"
    exit 0
fi
# --target keeps it out of the system's packages (PEP 668 environments included).
PIP_BREAK_SYSTEM_PACKAGES=1 python3 -m pip install --quiet --disable-pip-version-check --target "$dir" "openai==$version" "httpx==0.28.1" >&2
touch "$dir/.openai-$version"
echo "$PWD/$dir"
