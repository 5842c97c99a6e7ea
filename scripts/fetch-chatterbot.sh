#!/usr/bin/env bash
# Fetch the English chatterbot corpus (PyPI package chatterbot-corpus==1.3.3, checked by
# SHA-256) and write it as JSON lines {"category", "conversation", "prompt", "answer"}
# (one line per consecutive pair of turns; consecutive pairs share a turn, so hold out by
# conversation) to .cache/data/chatterbot.jsonl. Prints that path.
# Needs python3; PyYAML (pinned) is installed into .cache/marill/py when python3 lacks it.
# Never commit the corpus.
set -euo pipefail
cd "$(dirname "$0")/.."
dir=.cache/data
sha=86de5300afb9a80826386339d3bec79c0a72eb0358abb8327e2ecef5ae0ce154
out=$dir/chatterbot.jsonl
if [ -f "$out" ]; then
    echo "$out"
    exit 0
fi
if ! python3 -c "import yaml" 2>/dev/null; then
    PIP_BREAK_SYSTEM_PACKAGES=1 python3 -m pip install --quiet --disable-pip-version-check --target .cache/marill/py "pyyaml==6.0.2" >&2
    export PYTHONPATH="$PWD/.cache/marill/py${PYTHONPATH:+:$PYTHONPATH}"
fi
wheel=$(scripts/pypi-wheel.sh chatterbot-corpus==1.3.3 "$sha" "$dir")
python3 - "$wheel" "$out.tmp" <<'PY'
import json, sys, zipfile
import yaml
wheel, out = sys.argv[1], sys.argv[2]
n = 0
with zipfile.ZipFile(wheel) as z, open(out, "w") as f:
    for name in sorted(z.namelist()):
        if not (name.startswith("chatterbot_corpus/data/english/") and name.endswith(".yml")):
            continue
        doc = yaml.safe_load(z.read(name))
        cat = name.rsplit("/", 1)[1][:-4]
        for ci, conv in enumerate(doc.get("conversations", [])):
            if not isinstance(conv, list):
                continue
            turns = [str(t).strip() for t in conv]
            for p, a in zip(turns, turns[1:]):
                if p and a:
                    f.write(json.dumps({"category": cat, "conversation": f"{cat}/{ci}", "prompt": p, "answer": a}) + "\n")
                    n += 1
print(f"{n} pairs", file=sys.stderr)
PY
mv "$out.tmp" "$out"
echo "$out"
