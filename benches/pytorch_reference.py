#!/usr/bin/env python3
"""The diffuse UNet re-implemented in PyTorch: parity check and speed comparison.

Setup (once):
    python3 -m venv .venv-torch && .venv-torch/bin/pip install torch safetensors numpy
Run from the project root, after `cargo build --release`:
    .venv-torch/bin/python benches/pytorch_reference.py --compare [--json] [--threads N]

--compare runs `target/release/diffuse bench --model-only --json --export-parity DIR`, loads the
same safetensors weights into this PyTorch model, checks that both give the same output on the
fixed input (max abs difference <= 1e-4, or it exits with status 1), times PyTorch's forward and
a training step (forward + MSE + backward + AdamW) at the batches diffuse timed, with the same
thread count, and prints one table of diffuse, PyTorch and their ratio.

--network emoji does the same for the text-to-image network: the transformer text encoder and
Stable Diffusion's spatial transformers (self-attention, cross-attention to the text, GEGLU)
at the configured resolutions, timed at batch 1 and 16 and a training step at batch 32.
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


class MultiHeadAttention(nn.Module):
    """src/nn/attention.rs: to_q/to_k/to_v without bias, to_out with bias."""

    def __init__(self, dim, context_dim, heads):
        super().__init__()
        self.to_q = nn.Linear(dim, dim, bias=False)
        self.to_k = nn.Linear(context_dim, dim, bias=False)
        self.to_v = nn.Linear(context_dim, dim, bias=False)
        self.to_out = nn.Linear(dim, dim)
        self.heads = heads

    def forward(self, x, context=None):
        context = x if context is None else context
        b, n, c = x.shape
        h, hd = self.heads, c // self.heads
        split = lambda t: t.reshape(b, t.shape[1], h, hd).transpose(1, 2)  # (B, h, N, hd)
        q, k, v = split(self.to_q(x)), split(self.to_k(context)), split(self.to_v(context))
        att = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(hd), dim=-1)
        out = (att @ v).transpose(1, 2).reshape(b, n, c)
        return self.to_out(out)


class FeedForward(nn.Module):
    """GEGLU: proj_out(a * gelu(g)) with [a, g] = proj_in(x)."""

    def __init__(self, c):
        super().__init__()
        self.proj_in = nn.Linear(c, 8 * c)
        self.proj_out = nn.Linear(4 * c, c)

    def forward(self, x):
        a, g = self.proj_in(x).chunk(2, dim=-1)
        return self.proj_out(a * F.gelu(g))


class SpatialTransformer(nn.Module):
    """src/unet/transformer.rs (diffusers' Transformer2DModel with one BasicTransformerBlock)."""

    def __init__(self, c, context_dim, heads, groups):
        super().__init__()
        self.norm = GroupNorm(groups, c, eps=1e-5)
        self.proj_in = nn.Conv2d(c, c, 1)
        self.norm1 = nn.LayerNorm(c)
        self.attn1 = MultiHeadAttention(c, c, heads)
        self.norm2 = nn.LayerNorm(c)
        self.attn2 = MultiHeadAttention(c, context_dim, heads)
        self.norm3 = nn.LayerNorm(c)
        self.ff = FeedForward(c)
        self.proj_out = nn.Conv2d(c, c, 1)

    def forward(self, x, context):
        b, c, h, w = x.shape
        t = self.proj_in(self.norm(x)).reshape(b, c, h * w).transpose(1, 2)
        t = t + self.attn1(self.norm1(t))
        t = t + self.attn2(self.norm2(t), context)
        t = t + self.ff(self.norm3(t))
        return x + self.proj_out(t.transpose(1, 2).reshape(b, c, h, w))


class TextLayer(nn.Module):
    def __init__(self, d, heads):
        super().__init__()
        self.norm1 = nn.LayerNorm(d)
        self.attn = MultiHeadAttention(d, d, heads)
        self.norm2 = nn.LayerNorm(d)
        self.fc1 = nn.Linear(d, 4 * d)
        self.fc2 = nn.Linear(4 * d, d)

    def forward(self, x):
        x = x + self.attn(self.norm1(x))
        return x + self.fc2(F.gelu(self.fc1(self.norm2(x))))


class TextEncoder(nn.Module):
    """src/text/encoder.rs: token + position embeddings, pre-LN layers, final LayerNorm."""

    def __init__(self, t):
        super().__init__()
        self.token_embed = nn.Embedding(len(t["vocab"]), t["dim"])
        self.pos_embed = nn.Parameter(torch.zeros(t["max_len"], t["dim"]))
        self.layers = nn.ModuleList(TextLayer(t["dim"], t["heads"]) for _ in range(t["layers"]))
        self.norm = nn.LayerNorm(t["dim"])

    def forward(self, ids):
        x = self.token_embed(ids) + self.pos_embed[: ids.shape[1]]
        for layer in self.layers:
            x = layer(x)
        return self.norm(x)


def mixer(cfg, c, px, mid=False):
    text = cfg.get("text")
    if text is not None and (mid or px in cfg.get("cross_attention_resolutions", [])):
        return SpatialTransformer(c, text["dim"], cfg["num_heads"], cfg["groups"])
    if mid or px in cfg["attention_resolutions"]:
        return Attention(c, cfg["num_heads"], cfg["groups"])
    return None


def mix(m, h, context):
    if m is None:
        return h
    return m(h, context) if isinstance(m, SpatialTransformer) else m(h)


class Stage(nn.Module):
    def __init__(self, cin, cout, px, cfg, temb):
        super().__init__()
        self.res = ResBlock(cin, cout, temb, cfg["groups"])
        self.attn = mixer(cfg, cout, px)

    def forward(self, x, emb, context=None):
        return mix(self.attn, self.res(x, emb), context)


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
        self.text = TextEncoder(cfg["text"]) if cfg.get("text") else None
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
        self.mid.attn = mixer(cfg, ch, px, mid=True)
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
        ctx = self.text(cond) if self.text is not None else None
        h = self.conv_in(x)
        skips = [h]
        for level in self.down:
            for s in level.stages:
                h = s(h, emb, ctx)
                skips.append(h)
            if level.sampler() is not None:
                h = level.sampler()(h)
                skips.append(h)
        h = self.mid.res2(mix(self.mid.attn, self.mid.res1(h, emb), ctx), emb)
        for level in self.up:
            for s in level.stages:
                h = s(torch.cat([h, skips.pop()], dim=1), emb, ctx)
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
    if cfg.get("text"):
        # Token ids of a two-object caption (timing does not depend on which).
        cond = torch.tensor([[1, 10 + i % 24, 3, 1, 10 + (i + 5) % 24, 0, 0, 0][: cfg["text"]["max_len"]]
                             for i in range(b)])
    else:
        cond = torch.tensor(
            [[i % (len(sl["words"]) + 1) for sl in cfg["vocab"]["slots"]] for i in range(b)]
        )
    return x, t, cond, eps


def bench_torch(cfg, model, runs, forward_batches=(1, 16, 64), train_batch=64):
    out = {}
    with torch.no_grad():
        for b in forward_batches:
            x, t, cond, _ = inputs(cfg, b)
            out[f"forward_b{b}_ms"] = median_ms(lambda: model(x, t, cond), runs if b < 32 else 3)
    x, t, cond, eps = inputs(cfg, train_batch)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.01)

    def step():
        opt.zero_grad(set_to_none=True)
        loss = F.mse_loss(model(x, t, cond), eps)
        loss.backward()
        opt.step()

    out[f"train_b{train_batch}_ms"] = median_ms(step, 3)
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--compare", action="store_true", help="run diffuse too and print ratios")
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    ap.add_argument("--threads", type=int, default=None, help="threads for both (default: diffuse's)")
    ap.add_argument("--binary", default="target/release/diffuse")
    ap.add_argument("--base-channels", type=int, default=None)
    ap.add_argument("--network", default="shapes", choices=["shapes", "emoji"])
    args = ap.parse_args()

    env = dict(os.environ)
    if args.threads:
        env["RAYON_NUM_THREADS"] = str(args.threads)
    with tempfile.TemporaryDirectory() as d:
        cmd = [args.binary, "bench", "--model-only", "--json", "--quiet", "--export-parity", d,
               "--network", args.network]
        if args.base_channels:
            cmd += ["--base-channels", str(args.base_channels)]
        ours = None
        if args.compare:
            res = subprocess.run(cmd, env=env, capture_output=True, text=True)
            if res.returncode != 0:
                sys.exit(f"diffuse bench failed: {res.stderr.strip()}")
            ours = json.loads(res.stdout)["model"]
        else:
            cmd = [args.binary, "bench", "--model-only", "--json", "--quiet", "--quick", "--export-parity", d,
                   "--network", args.network]
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

    if args.network == "emoji":
        fwd, tb = (1, 16), 32
    else:
        fwd, tb = (1, 16, 64), 64
    theirs = bench_torch(cfg, model, runs=7, forward_batches=fwd, train_batch=tb)
    if ours is None:
        print(json.dumps({"pytorch": theirs, "max_abs_diff": max_abs, "threads": threads}))
        return
    mine = {f"forward_b{r['batch']}_ms": r["timing"]["median_ms"] for r in ours["forward"]}
    mine[f"train_b{ours['train']['batch']}_ms"] = ours["train"]["timing"]["median_ms"]
    rows = {
        k: {"diffuse": mine[k], "pytorch": theirs[k], "ratio": mine[k] / theirs[k]}
        for k in theirs
    }
    if args.json:
        print(json.dumps({**rows, "max_abs_diff": max_abs, "threads": threads}))
        return
    print(f"UNet: {ours['parameters']} parameters, {ours['gflop_per_image']:.3f} GFLOP/image, "
          f"{threads} threads, torch {torch.__version__}; parity max |diff| = {max_abs:.2e}")
    print(f"{'':<22}{'diffuse ms':>12}{'PyTorch ms':>12}{'ratio':>8}")
    for k, r in rows.items():
        kind, batch = k[:-3].split("_b")
        name = f"{'forward' if kind == 'forward' else 'train step'}, batch {batch}"
        print(f"{name:<22}{r['diffuse']:>12.1f}{r['pytorch']:>12.1f}{r['ratio']:>8.2f}")


if __name__ == "__main__":
    main()
