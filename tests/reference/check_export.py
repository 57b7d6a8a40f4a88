"""Checks `diffuse export --diffusers` with diffusers itself: the folder loads with
UNet2DModel.from_pretrained with no missing or unexpected weight, and its output equals
diffuse's own network on the same input.

    cargo run --release -- export --diffusers /tmp/shapes32-diffusers --model shapes32
    /tmp/venv-diff/bin/python tests/reference/check_export.py /tmp/shapes32-diffusers /tmp/io.safetensors
    DIFFUSE_EXPORT_IO=/tmp/io.safetensors cargo test --release --test diffusers_export -- --ignored --nocapture

It writes the input and diffusers' output to the second path; the ignored test compares
diffuse's own network (the built-in shapes32) on the same input.
"""
import sys

import torch
from diffusers import UNet2DModel
from safetensors.torch import load_file, save_file

folder, io_path = sys.argv[1], sys.argv[2]
model = UNet2DModel.from_pretrained(folder).eval()
weights = load_file(f"{folder}/diffusion_pytorch_model.safetensors")
keys = set(model.state_dict())
assert keys == set(weights), (sorted(keys - set(weights)), sorted(set(weights) - keys))
g = torch.Generator().manual_seed(3)
x = torch.randn(2, 3, 32, 32, generator=g)
t = torch.tensor([999, 17])
labels = torch.tensor([0 * 7 + 0, 4 * 7 + 5])  # "a red circle", "a blue star"
with torch.no_grad():
    out = model(x, t, class_labels=labels).sample
save_file({"x": x, "t": t.float(), "labels": labels, "out": out.contiguous()}, io_path)
print("all weights used; output written to", io_path)
