"""Produce tests/data/unet2d/<name>/: diffusers UNet2DModel folders with seeded random
weights (config.json + diffusion_pytorch_model.safetensors, written by save_pretrained) and
io.safetensors with an input batch, its timesteps, class labels and diffusers' output.

How the reference was made (2026-11-25):
    python3 -m venv /tmp/venv-diff
    /tmp/venv-diff/bin/pip install diffusers==0.42.1 torch==2.15.0 numpy safetensors
    /tmp/venv-diff/bin/python tests/reference/gen_unet2d.py tests/data/unet2d

With --large it writes, instead, a 1 M-parameter toy and the exact architectures of google/ddpm-cifar10-32 (35.7 M
parameters) and of the diffusion course's 32-px butterflies model (18.5 M), with random
weights, into a folder of your choice (about 220 MB, not committed); the ignored test
`large_architectures_match_diffusers` in tests/diffusers_unet.rs reads them:
    /tmp/venv-diff/bin/python tests/reference/gen_unet2d.py /tmp/unet2d-large --large
    DIFFUSE_UNET2D_LARGE=/tmp/unet2d-large cargo test --release --test diffusers_unet -- --ignored

The configs are small so the fixtures stay small; each exercises other keys: the plain one
both block kinds, the second scale_shift, class labels, one-head attention (null
attention_head_dim), asymmetric downsample padding, centred input and [sin, cos] features, the
third the ResNet resampling blocks and a middle block without attention, the fourth a learned
time embedding (a table row per timestep, time_embedding_type = learned).
"""
import os
import sys

import torch
from diffusers import UNet2DModel
from safetensors.torch import save_file

CONFIGS = {
    "plain": dict(
        sample_size=16, block_out_channels=(8, 16), layers_per_block=1, norm_num_groups=4,
        down_block_types=("DownBlock2D", "AttnDownBlock2D"),
        up_block_types=("AttnUpBlock2D", "UpBlock2D"), attention_head_dim=4,
    ),
    "scale_shift_class": dict(
        sample_size=16, block_out_channels=(8, 16), layers_per_block=2, norm_num_groups=4,
        down_block_types=("AttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "AttnUpBlock2D"), attention_head_dim=None,
        resnet_time_scale_shift="scale_shift", num_class_embeds=5, downsample_padding=0,
        flip_sin_to_cos=False, freq_shift=1, center_input_sample=True, norm_eps=1e-6,
    ),
    "resnet_resample": dict(
        sample_size=16, block_out_channels=(8, 16, 16), layers_per_block=1, norm_num_groups=4,
        down_block_types=("ResnetDownsampleBlock2D", "AttnDownBlock2D", "ResnetDownsampleBlock2D"),
        up_block_types=("ResnetUpsampleBlock2D", "AttnUpBlock2D", "ResnetUpsampleBlock2D"),
        attention_head_dim=8, add_attention=False,
    ),
    "learned_time": dict(
        sample_size=16, block_out_channels=(8, 16), layers_per_block=1, norm_num_groups=4,
        down_block_types=("DownBlock2D", "AttnDownBlock2D"),
        up_block_types=("AttnUpBlock2D", "UpBlock2D"), attention_head_dim=4,
        time_embedding_type="learned", num_train_timesteps=1000,
    ),
}


LARGE = {
    "toy_1m": dict(
        sample_size=32, layers_per_block=1, block_out_channels=(32, 48, 64),
        down_block_types=("DownBlock2D", "AttnDownBlock2D", "AttnDownBlock2D"),
        up_block_types=("AttnUpBlock2D", "AttnUpBlock2D", "UpBlock2D"),
        attention_head_dim=16, norm_num_groups=8,
    ),
    "cifar10_32": dict(
        sample_size=32, layers_per_block=2, block_out_channels=(128, 256, 256, 256),
        down_block_types=("DownBlock2D", "AttnDownBlock2D", "DownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "UpBlock2D", "AttnUpBlock2D", "UpBlock2D"),
        attention_head_dim=None, downsample_padding=0, flip_sin_to_cos=False, freq_shift=1,
        norm_eps=1e-6, norm_num_groups=32,
    ),
    "butterflies_32": dict(
        sample_size=32, layers_per_block=2, block_out_channels=(64, 128, 128, 256),
        down_block_types=("DownBlock2D", "DownBlock2D", "AttnDownBlock2D", "AttnDownBlock2D"),
        up_block_types=("AttnUpBlock2D", "AttnUpBlock2D", "UpBlock2D", "UpBlock2D"),
    ),
}


def ddim_run(model):
    """A whole DDIM run (diffusers' defaults, 10 steps, eta 0) from seeded noise."""
    from diffusers import DDIMScheduler
    sched = DDIMScheduler(num_train_timesteps=1000)
    sched.set_timesteps(10)
    g = torch.Generator().manual_seed(2)
    x = torch.randn(2, 3, 16, 16, generator=g)
    noise = x.clone()
    with torch.no_grad():
        for t in sched.timesteps:
            x = sched.step(model(x, t).sample, t, x).prev_sample
    return {"noise": noise, "sample": x.contiguous()}


def main(root, configs):
    for name, cfg in configs.items():
        torch.manual_seed(0)
        model = UNet2DModel(**cfg).eval()
        # Random norms and biases too, so that none of them can be read wrong unnoticed.
        with torch.no_grad():
            for p in model.parameters():
                p.add_(0.05 * torch.randn_like(p))
        folder = os.path.join(root, name)
        model.save_pretrained(folder, safe_serialization=True)
        g = torch.Generator().manual_seed(1)
        side = cfg["sample_size"]
        sample = torch.randn(2, 3, side, side, generator=g)
        timesteps = torch.tensor([999, 17])
        labels = torch.tensor([3, 0]) if cfg.get("num_class_embeds") else None
        with torch.no_grad():
            out = model(sample, timesteps, class_labels=labels).sample
        io = {"sample": sample, "timesteps": timesteps.float(), "output": out.contiguous()}
        if labels is not None:
            io["class_labels"] = labels.to(torch.int64)
        save_file(io, os.path.join(folder, "io.safetensors"))
        if name == "plain":
            save_file(ddim_run(model), os.path.join(folder, "ddim.safetensors"))
        n = sum(p.numel() for p in model.parameters())
        print(f"{name}: {n} parameters, |output| max {out.abs().max():.3f}")


if __name__ == "__main__":
    main(sys.argv[1], LARGE if "--large" in sys.argv[2:] else CONFIGS)
