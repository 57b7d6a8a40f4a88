//! RePaint (Lugmayr et al. 2022) as diffusers' `RePaintScheduler` computes it: the timestep
//! sequence with its jumps back in time (`jump_length`, `jump_n_sample`), the step that
//! denoises the unknown region while the known region is the original noised afresh, and
//! the undo step that noises the sample forward again.

use candle_core::Tensor;

use super::{predict_x0_eps, SamplerConfig};
use crate::error::{Error, Result};
use crate::schedule::NoiseSchedule;

/// diffusers' `jump_length` default: steps taken forward in time per jump ("j" in the paper).
pub const DEFAULT_JUMP_LENGTH: usize = 10;
/// diffusers' `jump_n_sample` default: how often each jump is made ("r" in the paper).
pub const DEFAULT_JUMP_N_SAMPLE: usize = 10;
/// The longest timestep sequence a run may take (model calls and undo steps together).
pub const MAX_REPAINT_TIMESTEPS: usize = 100_000;

/// `RePaintScheduler.set_timesteps`: the sequence of timesteps, going down by one step and
/// jumping back up `jump_length` steps `jump_n_sample − 1` times at every multiple of
/// `jump_length`. A timestep higher than the one before it is an undo step.
pub fn repaint_timesteps(
    train_timesteps: usize,
    steps: usize,
    jump_length: usize,
    jump_n_sample: usize,
) -> Result<Vec<usize>> {
    check_jumps(jump_length, jump_n_sample)?;
    let n = steps.min(train_timesteps);
    let mut jumps = std::collections::HashMap::new();
    for j in (0..n.saturating_sub(jump_length)).step_by(jump_length) {
        jumps.insert(j, jump_n_sample - 1);
    }
    let mut timesteps = Vec::new();
    let mut t = n;
    while t >= 1 {
        t -= 1;
        timesteps.push(t);
        if let Some(left) = jumps.get_mut(&t).filter(|left| **left > 0) {
            *left -= 1;
            for _ in 0..jump_length {
                t += 1;
                timesteps.push(t);
            }
        }
        if timesteps.len() > MAX_REPAINT_TIMESTEPS {
            return Err(Error::option_is(
                "jump-n-sample",
                jump_n_sample,
                format!(
                    "gives more than {MAX_REPAINT_TIMESTEPS} timesteps; use fewer steps or jumps"
                ),
            ));
        }
    }
    let ratio = train_timesteps / n;
    Ok(timesteps.into_iter().map(|t| t * ratio).collect())
}

fn check_jumps(jump_length: usize, jump_n_sample: usize) -> Result<()> {
    if jump_length == 0 {
        return Err(Error::option("jump-length", 0, "must be at least 1"));
    }
    if jump_n_sample == 0 {
        return Err(Error::option("jump-n-sample", 0, "must be at least 1"));
    }
    Ok(())
}

/// `RePaintScheduler.step` at timestep `t` for `steps` inference steps: x_{t−T/N} is the
/// DDIM step (with η = `config.eta`) where `keep` is 0, and the original `known` noised to
/// t − T/N with `noise` where `keep` is 1. `keep` `[B or 1, 1, H, W]` broadcasts over
/// channels. Returns (x_prev, x0_pred).
#[allow(clippy::too_many_arguments)]
pub fn repaint_step(
    schedule: &NoiseSchedule,
    config: &SamplerConfig,
    model_output: &Tensor,
    t: usize,
    x_t: &Tensor,
    known: &Tensor,
    keep: &Tensor,
    noise: &Tensor,
) -> Result<(Tensor, Tensor)> {
    let ac = &schedule.alphas_cumprod;
    let prev = t as i64 - (schedule.len() / config.steps.min(schedule.len())) as i64;
    let final_alpha = if config.set_alpha_to_one { 1.0 } else { ac[0] };
    let a_t = ac[t];
    let a_prev = if prev >= 0 {
        ac[prev as usize]
    } else {
        final_alpha
    };
    let (x0, eps) = predict_x0_eps(config.prediction, model_output, x_t, a_t)?;
    let x0 = config.process_x0(x0)?;
    // σ_t = η·√((1−ᾱ_prev)/(1−ᾱ_t)·(1−ᾱ_t/ᾱ_prev))
    let variance = (1.0 - a_prev) / (1.0 - a_t) * (1.0 - a_t / a_prev);
    let std_dev = config.eta * variance.sqrt();
    let direction = eps.affine((1.0 - a_prev - std_dev * std_dev).max(0.0).sqrt(), 0.0)?;
    let mut unknown = (x0.affine(a_prev.sqrt(), 0.0)? + direction)?; // [B, C, H, W]
    if t > 0 && config.eta > 0.0 {
        unknown = (unknown + noise.affine(std_dev, 0.0)?)?;
    }
    let known = (known.affine(a_prev.sqrt(), 0.0)? + noise.affine((1.0 - a_prev).sqrt(), 0.0)?)?;
    Ok((blend(&known, &unknown, keep)?, x0))
}

/// `keep`·a + (1 − `keep`)·b, with `keep` `[B or 1, 1, H, W]` broadcast over channels.
pub fn blend(a: &Tensor, b: &Tensor, keep: &Tensor) -> Result<Tensor> {
    let keep = keep.broadcast_as(a.shape())?;
    Ok((a.mul(&keep)? + b.mul(&keep.affine(-1.0, 1.0)?)?)?)
}
