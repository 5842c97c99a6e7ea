#!/usr/bin/env python3
"""Drive marill's OpenAI-compatible endpoint (`marill client --openai ADDR`) with the
`openai` Python package: list the models, one chat completion, the same streamed.

usage: openai-check.py BASE_URL MODEL PROMPT MAX_TOKENS

Prints one JSON line: the reply's content and token ids (marill's extra field), and the
streamed content and token ids, for the caller (marill-std/tests/openai.rs) to check
against the plaintext model.
"""
import json
import sys

from openai import OpenAI

base, model, prompt, n = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
client = OpenAI(base_url=base, api_key="unused-by-marill", max_retries=0, timeout=120)
ids = [m.id for m in client.models.list()]
assert model in ids, ids
messages = [{"role": "user", "content": prompt}]
r = client.chat.completions.create(model=model, messages=messages, max_tokens=n)
extra = r.to_dict()["marill"]
text, stream_ids, finish = "", None, None
for chunk in client.chat.completions.create(model=model, messages=messages, max_tokens=n, stream=True):
    c = chunk.choices[0]
    text += c.delta.content or ""
    finish = c.finish_reason or finish
    stream_ids = chunk.to_dict().get("marill", {}).get("token_ids", stream_ids)
print(json.dumps({
    "content": r.choices[0].message.content,
    "finish_reason": r.choices[0].finish_reason,
    "token_ids": extra["token_ids"],
    "stream_content": text,
    "stream_finish_reason": finish,
    "stream_token_ids": stream_ids,
}))
