"""Produce tests/data/diffusers_edit.json: RePaintScheduler's timestep sequences, a whole
RePaintPipeline loop step by step, and DDIMInverseScheduler step by step.

How the reference was made (2026-11-25):
    python3 -m venv /tmp/venv-diff
    /tmp/venv-diff/bin/pip install diffusers==0.42.1 torch==2.15.0 numpy
    /tmp/venv-diff/bin/python tests/reference/gen_edit.py > tests/data/diffusers_edit.json

As in gen_samplers.py, the sample, the stand-in model and every noise draw are closed-form
functions of the element index (and the draw's number), written out again in tests/edit.rs.
RePaint's own noise draws are replaced by patching
`diffusers.schedulers.scheduling_repaint.randn_tensor`.
"""
import json

import diffusers
import diffusers.schedulers.scheduling_repaint as repaint_mod
import torch
from diffusers import DDIMInverseScheduler, RePaintScheduler

N_ELEMS = 48  # a [1, 3, 4, 4] tensor
IDX = torch.arange(N_ELEMS, dtype=torch.float64).reshape(1, 3, 4, 4)


def x_init():
    return (torch.sin(0.37 * IDX + 0.1) * 1.3).float()


def original():
    """The picture to inpaint: 0.8·cos(0.21·i)."""
    return (0.8 * torch.cos(0.21 * IDX)).float()


def keep_mask():
    """The keep mask [1, 1, 4, 4]: 1 (kept) on the first two rows (pixels 0-7), 0 below."""
    m = torch.zeros(1, 1, 4, 4)
    m.view(-1)[:8] = 1.0
    return m


def fake_model(x, t):
    """The stand-in denoiser: 0.6·x + 0.2·cos(0.01·t + 0.3·i)."""
    return (0.6 * x.double() + 0.2 * torch.cos(0.01 * t + 0.3 * IDX)).float()


draws = [0]


def noise(shape=None, generator=None, device=None, dtype=None, **kw):
    """Draw k: sin(0.7·k + 0.13·i + 0.5)."""
    k = draws[0]
    draws[0] += 1
    return torch.sin(0.7 * k + 0.13 * IDX + 0.5).float()


repaint_mod.randn_tensor = noise

timestep_cases = []
for steps, jl, jn in [(10, 1, 1), (10, 3, 2), (7, 3, 4), (20, 10, 10), (50, 10, 10), (250, 10, 10), (1000, 100, 2)]:
    s = RePaintScheduler(num_train_timesteps=1000)
    s.set_timesteps(steps, jump_length=jl, jump_n_sample=jn)
    timestep_cases.append({"steps": steps, "jump_length": jl, "jump_n_sample": jn,
                           "timesteps": [int(t) for t in s.timesteps]})

runs = []
for eta in [0.0, 0.5]:
    s = RePaintScheduler(num_train_timesteps=1000, eta=eta)
    s.set_timesteps(10, jump_length=3, jump_n_sample=2)
    draws[0] = 0
    image, orig, mask = x_init(), original(), keep_mask()
    states = []
    t_last = int(s.timesteps[0]) + 1
    for t in s.timesteps:
        t = int(t)
        if t < t_last:
            image = s.step(fake_model(image, t), t, image, orig, mask).prev_sample
        else:
            image = s.undo_step(image, t_last)
        t_last = t
        states.append(image.flatten().tolist())
    runs.append({"eta": eta, "steps": 10, "jump_length": 3, "jump_n_sample": 2, "states": states})

inverse = []
for spacing in ["leading", "trailing"]:
    s = DDIMInverseScheduler(num_train_timesteps=1000, clip_sample=False, timestep_spacing=spacing)
    s.set_timesteps(10)
    x = x_init()
    steps = []
    for t in s.timesteps:
        t = int(t)
        x = s.step(fake_model(x, t), t, x).prev_sample
        steps.append({"t": t, "x": x.flatten().tolist()})
    inverse.append({"spacing": spacing, "steps": steps})

print(json.dumps({"diffusers": diffusers.__version__, "repaint_timesteps": timestep_cases,
                  "repaint_runs": runs, "ddim_inverse": inverse}))
