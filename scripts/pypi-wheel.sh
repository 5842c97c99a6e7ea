#!/usr/bin/env bash
# pypi-wheel.sh NAME==VERSION SHA256 DIR: download the package's wheel from PyPI into DIR
# unless a copy with that checksum is there, check it, and print its path.
set -euo pipefail
spec=$1 sha=$2 dir=$3
mkdir -p "$dir"
name=${spec%%==*}
version=${spec##*==}
pattern="$dir/${name//-/_}-${version}-*.whl"
wheel=$(ls $pattern 2>/dev/null | head -n1 || true)
if [ -z "$wheel" ] || ! echo "$sha  $wheel" | sha256sum -c --status; then
    echo "fetching $spec from PyPI" >&2
    python3 -m pip download --no-deps --quiet --disable-pip-version-check "$spec" -d "$dir" >&2
    wheel=$(ls $pattern | head -n1)
fi
echo "$sha  $wheel" | sha256sum -c --status || { echo "checksum mismatch: $wheel" >&2; exit 1; }
echo "$wheel"
