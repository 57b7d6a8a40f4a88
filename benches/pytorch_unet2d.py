#!/usr/bin/env python3
"""diffusers' UNet2DModel forward in PyTorch against `diffuse bench --model DIR`, same folder,
same thread count.

Setup (once): python3 -m venv .venv-torch && .venv-torch/bin/pip install torch diffusers safetensors
Run after `cargo build --release`, e.g. on the exact google/ddpm-cifar10-32 architecture with
random weights (tests/reference/gen_unet2d.py DIR --large writes it):
    .venv-torch/bin/python benches/pytorch_unet2d.py /tmp/unet2d-large/cifar10_32 --threads 2

Prints, per batch (1 and 16), the median forward time of each and their ratio. With
--rounds N the two alternate N times (diffuse's bench, then PyTorch's timing, and again), and
the medians over the rounds are compared, with the range of the per-round ratios: single
runs on a shared 2-core machine vary by tens of percent.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time

import torch
from diffusers import UNet2DModel


def time_forward(model, batch, runs):
    side = model.config.sample_size
    x = torch.randn(batch, model.config.in_channels, side, side, generator=torch.Generator().manual_seed(0))
    t = torch.full((batch,), 500)
    with torch.no_grad():
        model(x, t)
        ms = []
        for _ in range(runs):
            start = time.perf_counter()
            model(x, t)
            ms.append((time.perf_counter() - start) * 1e3)
    return statistics.median(ms)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("folder")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--binary", default="target/release/diffuse")
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--rounds", type=int, default=1, help="alternate diffuse and PyTorch this many times")
    args = ap.parse_args()
    env = dict(os.environ, RAYON_NUM_THREADS=str(args.threads))
    torch.set_num_threads(args.threads)
    model = UNet2DModel.from_pretrained(args.folder).eval()
    n = sum(p.numel() for p in model.parameters())
    print(f"{args.folder}: {n / 1e6:.1f} M parameters, {args.threads} threads, torch {torch.__version__}, "
          f"{args.rounds} round(s)")
    ours, theirs = {}, {}
    for _ in range(args.rounds):
        res = subprocess.run([args.binary, "bench", "--model", args.folder, "--json", "--quiet"],
                             env=env, capture_output=True, text=True)
        if res.returncode != 0:
            sys.exit(f"diffuse bench failed: {res.stderr.strip()}")
        for r in json.loads(res.stdout)["rows"]:
            ours.setdefault(r["batch"], []).append(r["timing"]["median_ms"])
        for b in ours:
            theirs.setdefault(b, []).append(time_forward(model, b, args.runs))
    print(f"{'batch':>6}{'diffuse ms':>12}{'PyTorch ms':>12}{'ratio':>8}  per-round ratios")
    for b in sorted(ours):
        a, t = statistics.median(ours[b]), statistics.median(theirs[b])
        per_round = [x / y for x, y in zip(ours[b], theirs[b])]
        print(f"{b:>6}{a:>12.1f}{t:>12.1f}{a / t:>8.2f}  {min(per_round):.2f}..{max(per_round):.2f}")

if __name__ == "__main__":
    main()
