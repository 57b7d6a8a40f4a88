"""Produce tests/data/diffusers_samplers.json: timesteps and step-by-step outputs of diffusers'
DDPMScheduler, DDIMScheduler and DPMSolverMultistepScheduler (2M, dpmsolver++, midpoint).

How the reference was made (2026-11-24):
    python3 -m venv /tmp/venv-diff
    /tmp/venv-diff/bin/pip install diffusers==0.42.0 torch==2.15.0 numpy
    /tmp/venv-diff/bin/python tests/reference/gen_samplers.py > tests/data/diffusers_samplers.json

The sample, the stand-in model and DDPM's noise are closed-form functions of the element
index and the timestep (written out below and again in tests/samplers.rs), so the Rust side
recomputes the same inputs. DDPM's own noise draw is replaced by patching
`diffusers.schedulers.scheduling_ddpm.randn_tensor`.
"""
import json
import math

import diffusers
import diffusers.schedulers.scheduling_ddpm as ddpm_mod
import torch
from diffusers import DDIMScheduler, DDPMScheduler, DPMSolverMultistepScheduler

N_ELEMS = 48  # a [1, 3, 4, 4] tensor


def x_init():
    return torch.tensor([math.sin(0.37 * i + 0.1) * 1.3 for i in range(N_ELEMS)], dtype=torch.float32).reshape(1, 3, 4, 4)


def fake_model(x, t):
    """The stand-in denoiser: 0.6·x + 0.2·cos(0.01·t + 0.3·i)."""
    idx = torch.arange(N_ELEMS, dtype=torch.float64).reshape(1, 3, 4, 4)
    return (0.6 * x.double() + 0.2 * torch.cos(0.01 * t + 0.3 * idx)).float()


def ddpm_noise(t):
    idx = torch.arange(N_ELEMS, dtype=torch.float64).reshape(1, 3, 4, 4)
    return torch.sin(1.7 * idx + 0.013 * t).float()


current_t = [0]
ddpm_mod.randn_tensor = lambda shape, generator=None, device=None, dtype=None, **kw: ddpm_noise(current_t[0]).to(dtype or torch.float32)


def run(sched, n, kwargs=None):
    sched.set_timesteps(n)
    x = x_init()
    steps = []
    for t in sched.timesteps:
        t = int(t)
        current_t[0] = t
        mo = fake_model(x, t)
        out = sched.step(mo, t, x, **(kwargs or {}))
        x = out.prev_sample
        x0 = getattr(out, "pred_original_sample", None)
        steps.append({"t": t, "prev": x.flatten().tolist(), "x0": None if x0 is None else x0.flatten().tolist()})
    return steps


cases = []
for spacing in ["leading", "trailing", "linspace"]:
    for n in [3, 10, 50, 1000]:
        for name, cls, extra in [
            ("ddpm", DDPMScheduler, {}),
            ("ddim", DDIMScheduler, {}),
            ("dpm++2m", DPMSolverMultistepScheduler, {}),
        ]:
            s = cls(num_train_timesteps=1000, beta_schedule="linear", timestep_spacing=spacing, **extra)
            s.set_timesteps(n)
            cases.append({"sampler": name, "spacing": spacing, "steps": n, "timesteps": [int(t) for t in s.timesteps]})

trajectories = []
for name, make, kwargs in [
    ("ddpm", lambda sp: DDPMScheduler(timestep_spacing=sp), None),
    ("ddpm-noclip", lambda sp: DDPMScheduler(timestep_spacing=sp, clip_sample=False), None),
    ("ddim", lambda sp: DDIMScheduler(timestep_spacing=sp), {"eta": 0.0}),
    ("ddim-eta", lambda sp: DDIMScheduler(timestep_spacing=sp, clip_sample=False), {"eta": 0.7, "variance_noise": None}),
    ("ddim-no-alpha-one", lambda sp: DDIMScheduler(timestep_spacing=sp, set_alpha_to_one=False, steps_offset=1), {"eta": 0.0}),
    ("dpm++2m", lambda sp: DPMSolverMultistepScheduler(timestep_spacing=sp), None),
    ("dpm++2m-v", lambda sp: DPMSolverMultistepScheduler(timestep_spacing=sp, prediction_type="v_prediction"), None),
    ("ddim-v", lambda sp: DDIMScheduler(timestep_spacing=sp, prediction_type="v_prediction"), {"eta": 0.0}),
    # Dynamic thresholding: at diffusers' defaults (s held to 1, as diffuse's CLI uses it) and
    # with a ratio and ceiling that make the per-image quantile matter.
    ("dpm++2m-thresh", lambda sp: DPMSolverMultistepScheduler(timestep_spacing=sp, thresholding=True), None),
    ("dpm++2m-thresh-q", lambda sp: DPMSolverMultistepScheduler(timestep_spacing=sp, thresholding=True, dynamic_thresholding_ratio=0.9, sample_max_value=3.0), None),
    ("ddpm-thresh-q", lambda sp: DDPMScheduler(timestep_spacing=sp, thresholding=True, dynamic_thresholding_ratio=0.9, sample_max_value=3.0), None),
]:
    for spacing in ["leading", "trailing", "linspace"]:
        for n in [3, 10]:
            kw = dict(kwargs or {})
            if kw.get("variance_noise", 1) is None:
                # DDIM with eta > 0 takes its noise as variance_noise: use DDPM's closed form.
                sched = make(spacing)
                sched.set_timesteps(n)
                x = x_init()
                steps = []
                for t in sched.timesteps:
                    t = int(t)
                    out = sched.step(fake_model(x, t), t, x, eta=kw["eta"], variance_noise=ddpm_noise(t))
                    x = out.prev_sample
                    steps.append({"t": t, "prev": x.flatten().tolist(), "x0": out.pred_original_sample.flatten().tolist()})
            else:
                steps = run(make(spacing), n, kw)
            trajectories.append({"case": name, "spacing": spacing, "steps": n, "trajectory": steps})

print(json.dumps({"diffusers": diffusers.__version__, "torch": torch.__version__, "timesteps": cases, "trajectories": trajectories}))
