#!/usr/bin/env python3
"""Records the exact training stream in the metadata of the two shipped models, which were
written before `diffuse train` recorded it (`ModelMeta::data`, read by `diffuse nearest`).
Only the metadata JSON changes; the tensors' bytes stay as they are.

The values come from each run's record in models/runs/<name>/commands.txt and the
trainer's default data seed (1, the default since a4818e8): emoji64 took 6,000 steps of 32
emoji scenes; shapes32 5,173 steps of 64 shapes pictures (its trained_steps). Neither
generator's code changed in a way that alters pictures after these runs began
(`git log -- src/data`). Run from the repository root: python3 models/record_streams.py
"""
import json
import os
import struct

STREAMS = {
    "models/emoji64.safetensors": {"data": "emoji", "data_seed": 1, "batch_size": 32},
    "models/shapes32.safetensors": {"data": "shapes", "data_seed": 1, "batch_size": 64},
}

for path, stream in STREAMS.items():
    blob = open(path, "rb").read()
    n = struct.unpack("<Q", blob[:8])[0]
    header = json.loads(blob[8 : 8 + n])
    meta = json.loads(header["__metadata__"]["diffuse_model"])
    meta["data"] = dict(stream, steps=meta["trained_steps"])
    header["__metadata__"]["diffuse_model"] = json.dumps(meta, separators=(",", ":"))
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)  # safetensors pads the header with spaces to 8 bytes
    with open(path + ".tmp", "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text + blob[8 + n :])
    os.replace(path + ".tmp", path)
    print(path, meta["data"])
