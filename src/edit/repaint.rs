//! RePaint (Lugmayr et al. 2022) as diffusers' `RePaintScheduler` and `RePaintPipeline`
//! compute it, all in one place: the timestep sequence with its jumps back in time
//! (`jump_length`, `jump_n_sample`), the step that denoises the unknown region while the
//! known region is the original noised afresh, the undo step that noises the sample forward
//! again, and the run over the whole sequence, step by step.

use candle_core::Tensor;

use super::inpaint::{blend, Known};
use crate::error::{Error, Result};
use crate::pipeline::StepEvent;
use crate::sampler::{predict_x0_eps, SamplerConfig};
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

/// RePaint over a timestep sequence from [`repaint_timesteps`], taken one entry at a time:
/// a timestep below the one before is a model step, one above it an undo step that noises
/// the sample forward one training timestep at a time.
pub struct RePaint {
    schedule: NoiseSchedule,
    /// Steps, η, `clip_sample`/thresholding and the prediction type.
    config: SamplerConfig,
    timesteps: Vec<usize>,
    known: Known,
    /// The last model step's x0 prediction and model output, which an undo step repeats.
    x0: Option<(Tensor, Tensor)>,
}

impl RePaint {
    pub fn new(
        schedule: &NoiseSchedule,
        config: SamplerConfig,
        timesteps: Vec<usize>,
        known: Known,
    ) -> Self {
        Self {
            schedule: schedule.clone(),
            config,
            timesteps,
            known,
            x0: None,
        }
    }

    /// The whole sequence: model steps and undo steps.
    pub fn timesteps(&self) -> &[usize] {
        &self.timesteps
    }

    /// Entry `i` of the sequence from `x` (the state before it): `predict(x_t, t)` on a model
    /// step, `draw()` for each fresh noise (one per model step, T/N per undo step). Returns
    /// (x after it, the x0 prediction, the model output); an undo step repeats the last
    /// prediction and output (zeros before the first).
    pub fn step(
        &mut self,
        mut predict: impl FnMut(&Tensor, usize) -> Result<Tensor>,
        i: usize,
        x: &Tensor,
        mut draw: impl FnMut() -> Result<Tensor>,
    ) -> Result<(Tensor, Tensor, Tensor)> {
        let (schedule, config) = (&self.schedule, &self.config);
        let t = self.timesteps[i];
        let t_last = match i {
            0 => t + 1,
            _ => self.timesteps[i - 1],
        };
        let next = if t < t_last {
            let eps = predict(x, t)?;
            let z = draw()?;
            let (known, keep) = (&self.known.image, &self.known.keep);
            let (next, x0) = repaint_step(schedule, config, &eps, t, x, known, keep, &z)?;
            self.x0 = Some((x0, eps));
            next
        } else {
            let ratio = schedule.len() / config.steps.min(schedule.len());
            let mut x = x.clone();
            for k in 0..ratio {
                x = schedule.q_step(&x, t_last + k, &draw()?)?;
            }
            x
        };
        let (x0, eps) = match &self.x0 {
            Some((x0, eps)) => (x0.clone(), eps.clone()),
            None => (next.zeros_like()?, next.zeros_like()?),
        };
        Ok((next, x0, eps))
    }

    /// Runs the whole sequence from `noise`, as diffusers' `RePaintPipeline`; `on_step` sees
    /// every state. The last step's known part is the original at ᾱ = 1: the picture itself.
    pub fn run(
        &mut self,
        mut predict: impl FnMut(&Tensor, usize) -> Result<Tensor>,
        noise: Tensor,
        mut draw: impl FnMut() -> Result<Tensor>,
        mut on_step: impl FnMut(StepEvent),
    ) -> Result<Tensor> {
        let mut x = noise; // [B, C, H, W]
        let n = self.timesteps.len();
        for i in 0..n {
            let (next, x0, eps) = self.step(&mut predict, i, &x, &mut draw)?;
            x = next;
            on_step(StepEvent {
                i,
                n,
                t: self.timesteps[i],
                x: &x,
                x0: &x0,
                model_output: &eps,
            });
        }
        Ok(x)
    }
}
