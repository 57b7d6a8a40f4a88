#!/usr/bin/env python3
"""The diffuse UNet re-implemented in PyTorch: parity check and speed comparison.

Setup (once):
    python3 -m venv .venv-torch && .venv-torch/bin/pip install torch safetensors numpy
Run from the project root, after `cargo build --release`:
    .venv-torch/bin/python benches/pytorch_reference.py --compare [--json] [--threads N]

--compare runs `target/release/diffuse bench --model-only --json --export-parity DIR`, loads the
same safetensors weights into this PyTorch model, checks that both give the same output on the
fixed input (max abs difference <= 1e-4, or it exits with status 1), times PyTorch's forward at
batch 1/16/64 and a training step at batch 64 (forward + MSE + backward + AdamW) with the same
thread count, and prints one table of diffuse, PyTorch and their ratio.
"""
import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time

import torch
import torch.nn.functional as F
from safetensors.torch import load_file
from torch import nn


class GroupNorm(nn.GroupNorm):
    def forward(self, x, silu=False):
        y = super().forward(x)
        return F.silu(y) if silu else y


class ResBlock(nn.Module):
    def __init__(self, cin, cout, temb, groups):
        super().__init__()
        self.norm1 = GroupNorm(groups, cin, eps=1e-5)
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=1)
        self.emb_proj = nn.Linear(temb, cout)
        self.norm2 = GroupNorm(groups, cout, eps=1e-5)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1)
        self.skip = nn.Conv2d(cin, cout, 1) if cin != cout else None

    def forward(self, x, emb_act):
        h = self.conv1(self.norm1(x, True))
        h = h + self.emb_proj(emb_act)[:, :, None, None]
        h = self.conv2(self.norm2(h, True))
        return (self.skip(x) if self.skip is not None else x) + h


class Attention(nn.Module):
    def __init__(self, c, heads, groups):
        super().__init__()
        self.norm = GroupNorm(groups, c, eps=1e-5)
        self.qkv = nn.Conv2d(c, 3 * c, 1)
        self.proj = nn.Conv2d(c, c, 1)
        self.heads = heads

    def forward(self, x):
        b, c, h, w = x.shape
        nh, hd, n = self.heads, c // self.heads, h * w
        qkv = self.qkv(self.norm(x)).reshape(b, 3, nh, hd, n)
        q = qkv[:, 0].reshape(b * nh, hd, n)
        k = qkv[:, 1].reshape(b * nh, hd, n)
        v = qkv[:, 2].reshape(b * nh, hd, n)
        att = torch.softmax(q.transpose(1, 2) @ k / math.sqrt(hd), dim=-1)  # (B*nh, N, N)
        out = (v @ att.transpose(1, 2)).reshape(b, c, h, w)
        return x + self.proj(out)


class Stage(nn.Module):
    def __init__(self, cin, cout, px, cfg, temb):
        super().__init__()
        self.res = ResBlock(cin, cout, temb, cfg["groups"])
        self.attn = (
            Attention(cout, cfg["num_heads"], cfg["groups"])
            if px in cfg["attention_resolutions"]
            else None
        )

    def forward(self, x, emb):
        h = self.res(x, emb)
        return self.attn(h) if self.attn is not None else h


class Down(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.conv = nn.Conv2d(c, c, 3, stride=2, padding=1)

    def forward(self, x):
        return self.conv(x)


class Up(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.conv = nn.Conv2d(c, c, 3, padding=1)

    def forward(self, x):
        return self.conv(F.interpolate(x, scale_factor=2, mode="nearest"))


class Level(nn.Module):
    def __init__(self, stages, sampler, name):
        super().__init__()
        self.stages = nn.ModuleList(stages)
        if sampler is not None:
            setattr(self, name, sampler)
        self.sampler_name = name if sampler is not None else None

    def sampler(self):
        return getattr(self, self.sampler_name) if self.sampler_name else None


class UNet(nn.Module):
    """Mirrors src/unet/mod.rs, parameter names included."""

    def __init__(self, cfg):
        super().__init__()
        self.cfg = cfg
        c0 = cfg["base_channels"]
        temb = 4 * c0
        g = cfg["groups"]
        mult = cfg["channel_mult"]
        levels = len(mult)
        self.time_in = nn.Linear(c0, temb)
        self.time_out = nn.Linear(temb, temb)
        self.cond_embed = nn.ModuleList(
            nn.Embedding(len(s["words"]) + 1, temb) for s in cfg["vocab"]["slots"]
        )
        self.conv_in = nn.Conv2d(cfg["in_channels"], c0, 3, padding=1)
        px, ch, skips = cfg["image_size"], c0, [c0]
        down = []
        for l, m in enumerate(mult):
            out, stages = c0 * m, []
            for _ in range(cfg["num_res_blocks"]):
                stages.append(Stage(ch, out, px, cfg, temb))
                ch = out
                skips.append(ch)
            ds = None
            if l + 1 < levels:
                px //= 2
                skips.append(ch)
                ds = Down(ch)
            down.append(Level(stages, ds, "downsample"))
        self.down = nn.ModuleList(down)
        self.mid = nn.Module()
        self.mid.res1 = ResBlock(ch, ch, temb, g)
        self.mid.attn = Attention(ch, cfg["num_heads"], g)
        self.mid.res2 = ResBlock(ch, ch, temb, g)
        up = []
        for l in reversed(range(levels)):
            out, stages = c0 * mult[l], []
            for _ in range(cfg["num_res_blocks"] + 1):
                stages.append(Stage(ch + skips.pop(), out, px, cfg, temb))
                ch = out
            us = None
            if l > 0:
                px *= 2
                us = Up(ch)
            up.append(Level(stages, us, "upsample"))
        self.up = nn.ModuleList(up)
        self.norm_out = GroupNorm(g, ch, eps=1e-5)
        self.conv_out = nn.Conv2d(ch, cfg["in_channels"], 3, padding=1)

    def embedding(self, t, cond):
        half = self.cfg["base_channels"] // 2
        freqs = torch.exp(-math.log(10000.0) * torch.arange(half, dtype=torch.float64) / half)
        args = t.to(torch.float64)[:, None] * freqs[None]
        feats = torch.cat([torch.cos(args), torch.sin(args)], dim=1).float()
        emb = self.time_out(F.silu(self.time_in(feats)))
        for i, table in enumerate(self.cond_embed):
            emb = emb + table(cond[:, i])
        return F.silu(emb)

    def forward(self, x, t, cond):
        emb = self.embedding(t, cond)
        h = self.conv_in(x)
        skips = [h]
        for level in self.down:
            for s in level.stages:
                h = s(h, emb)
                skips.append(h)
            if level.sampler() is not None:
                h = level.sampler()(h)
                skips.append(h)
        h = self.mid.res2(self.mid.attn(self.mid.res1(h, emb)), emb)
        for level in self.up:
            for s in level.stages:
                h = s(torch.cat([h, skips.pop()], dim=1), emb)
            if level.sampler() is not None:
                h = level.sampler()(h)
        return self.conv_out(self.norm_out(h, True))


def load_model(d):
    cfg = json.load(open(os.path.join(d, "config.json")))
    model = UNet(cfg)
    state = load_file(os.path.join(d, "weights.safetensors"))
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        sys.exit(f"weight names differ: missing {missing[:5]} unexpected {unexpected[:5]}")
    return cfg, model


def median_ms(fn, runs, warmup=1):
    for _ in range(warmup):
        fn()
    ts = []
    for _ in range(runs):
        s = time.perf_counter()
        fn()
        ts.append((time.perf_counter() - s) * 1e3)
    return statistics.median(ts)


def inputs(cfg, b):
    g = torch.Generator().manual_seed(b)
    s = cfg["image_size"]
    x = torch.randn(b, cfg["in_channels"], s, s, generator=g)
    eps = torch.randn(b, cfg["in_channels"], s, s, generator=g)
    t = torch.tensor([(i * 379) % 1000 for i in range(b)], dtype=torch.float32)
    cond = torch.tensor(
        [[i % (len(sl["words"]) + 1) for sl in cfg["vocab"]["slots"]] for i in range(b)]
    )
    return x, t, cond, eps


def bench_torch(cfg, model, runs):
    out = {}
    with torch.no_grad():
        for b in (1, 16, 64):
            x, t, cond, _ = inputs(cfg, b)
            out[f"forward_b{b}_ms"] = median_ms(lambda: model(x, t, cond), runs if b < 64 else 3)
    x, t, cond, eps = inputs(cfg, 64)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.01)

    def step():
        opt.zero_grad(set_to_none=True)
        loss = F.mse_loss(model(x, t, cond), eps)
        loss.backward()
        opt.step()

    out["train_b64_ms"] = median_ms(step, 3)
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--compare", action="store_true", help="run diffuse too and print ratios")
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    ap.add_argument("--threads", type=int, default=None, help="threads for both (default: diffuse's)")
    ap.add_argument("--binary", default="target/release/diffuse")
    ap.add_argument("--base-channels", type=int, default=None)
    args = ap.parse_args()

    env = dict(os.environ)
    if args.threads:
        env["RAYON_NUM_THREADS"] = str(args.threads)
    with tempfile.TemporaryDirectory() as d:
        cmd = [args.binary, "bench", "--model-only", "--json", "--quiet", "--export-parity", d]
        if args.base_channels:
            cmd += ["--base-channels", str(args.base_channels)]
        ours = None
        if args.compare:
            res = subprocess.run(cmd, env=env, capture_output=True, text=True)
            if res.returncode != 0:
                sys.exit(f"diffuse bench failed: {res.stderr.strip()}")
            ours = json.loads(res.stdout)["model"]
        else:
            cmd = [args.binary, "bench", "--model-only", "--json", "--quiet", "--quick", "--export-parity", d]
            res = subprocess.run(cmd, env=env, capture_output=True, text=True)
            if res.returncode != 0:
                sys.exit(f"diffuse bench failed: {res.stderr.strip()}")
        threads = args.threads or (ours["threads"] if ours else json.loads(res.stdout)["model"]["threads"])
        torch.set_num_threads(threads)
        cfg, model = load_model(d)
        p = load_file(os.path.join(d, "parity.safetensors"))
        with torch.no_grad():
            out = model(p["x"], p["t"], p["cond"].long())
        max_abs = (out - p["out"]).abs().max().item()
        if not max_abs <= 1e-4:
            sys.exit(f"PARITY FAILED: PyTorch and diffuse differ by {max_abs:.3e} (> 1e-4)")

    theirs = bench_torch(cfg, model, runs=7)
    if ours is None:
        print(json.dumps({"pytorch": theirs, "max_abs_diff": max_abs, "threads": threads}))
        return
    mine = {f"forward_b{r['batch']}_ms": r["timing"]["median_ms"] for r in ours["forward"]}
    mine["train_b64_ms"] = ours["train"]["timing"]["median_ms"]
    rows = {
        k: {"diffuse": mine[k], "pytorch": theirs[k], "ratio": mine[k] / theirs[k]}
        for k in ("forward_b1_ms", "forward_b16_ms", "forward_b64_ms", "train_b64_ms")
    }
    if args.json:
        print(json.dumps({**rows, "max_abs_diff": max_abs, "threads": threads}))
        return
    print(f"UNet: {ours['parameters']} parameters, {ours['gflop_per_image']:.3f} GFLOP/image, "
          f"{threads} threads, torch {torch.__version__}; parity max |diff| = {max_abs:.2e}")
    print(f"{'':<22}{'diffuse ms':>12}{'PyTorch ms':>12}{'ratio':>8}")
    names = {"forward_b1_ms": "forward, batch 1", "forward_b16_ms": "forward, batch 16",
             "forward_b64_ms": "forward, batch 64", "train_b64_ms": "train step, batch 64"}
    for k, r in rows.items():
        print(f"{names[k]:<22}{r['diffuse']:>12.1f}{r['pytorch']:>12.1f}{r['ratio']:>8.2f}")


if __name__ == "__main__":
    main()
