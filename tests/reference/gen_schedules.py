"""Produce tests/data/diffusers_schedules.json: betas and alphas_cumprod from diffusers.

How the reference was made (2026-11-24):
    python3 -m venv /tmp/venv-diff
    /tmp/venv-diff/bin/pip install diffusers==0.42.0 torch==2.15.0 numpy
    /tmp/venv-diff/bin/python tests/reference/gen_schedules.py > tests/data/diffusers_schedules.json

Every value is DDPMScheduler(...).betas / .alphas_cumprod exactly as diffusers stores them
(float32 tensors), printed as the decimal of that float32.
"""
import json

import diffusers
import torch
from diffusers import DDPMScheduler

CASES = [
    # (our name, diffusers beta_schedule, train_timesteps, beta_start, beta_end)
    ("linear", "linear", 1000, 0.0001, 0.02),
    ("scaled-linear", "scaled_linear", 1000, 0.0001, 0.02),
    ("cosine", "squaredcos_cap_v2", 1000, 0.0001, 0.02),
    ("sigmoid", "sigmoid", 1000, 0.0001, 0.02),
    # non-default settings, to check the options are wired through
    ("linear", "linear", 50, 0.001, 0.05),
    ("scaled-linear", "scaled_linear", 200, 0.00085, 0.012),
    ("cosine", "squaredcos_cap_v2", 10, 0.0001, 0.02),
    ("sigmoid", "sigmoid", 300, 0.0002, 0.03),
]

out = {"diffusers": diffusers.__version__, "torch": torch.__version__, "cases": []}
for name, dname, t, b0, b1 in CASES:
    s = DDPMScheduler(num_train_timesteps=t, beta_start=b0, beta_end=b1, beta_schedule=dname)
    out["cases"].append(
        {
            "beta_schedule": name,
            "train_timesteps": t,
            "beta_start": b0,
            "beta_end": b1,
            "betas": [float(v) for v in s.betas.tolist()],
            "alphas_cumprod": [float(v) for v in s.alphas_cumprod.tolist()],
        }
    )
print(json.dumps(out))
