//! DDIM (Song et al. 2021, eq. 12) as diffusers' `DDIMScheduler.step`: η-controlled noise,
//! `clip_sample`, `set_alpha_to_one`, and the previous timestep t − T/N.

use candle_core::Tensor;

use super::{predict_x0_eps, DiscreteGrid, Sampler, SamplerConfig};
use crate::error::Result;
use crate::schedule::NoiseSchedule;

pub struct Ddim<'a>(DiscreteGrid<'a>);

impl<'a> Ddim<'a> {
    pub fn new(schedule: &'a NoiseSchedule, config: &SamplerConfig) -> Self {
        Self(DiscreteGrid::new(schedule, config))
    }
}

impl Sampler for Ddim<'_> {
    fn timesteps(&self) -> &[usize] {
        &self.0.timesteps
    }

    fn uses_noise(&self) -> bool {
        self.0.config.uses_noise()
    }

    fn step(
        &mut self,
        model_output: &Tensor,
        i: usize,
        x_t: &Tensor,
        noise: &Tensor,
    ) -> Result<(Tensor, Tensor)> {
        let ac = &self.0.schedule.alphas_cumprod;
        let t = self.0.timesteps[i];
        let prev = t as i64 - (self.0.schedule.len() / self.0.config.steps) as i64;
        let final_alpha = if self.0.config.set_alpha_to_one {
            1.0
        } else {
            ac[0]
        };
        let a_t = ac[t];
        let a_prev = if prev >= 0 {
            ac[prev as usize]
        } else {
            final_alpha
        };
        let (x0, eps) = predict_x0_eps(self.0.config.prediction, model_output, x_t, a_t)?;
        let x0 = self.0.config.process_x0(x0)?;
        // σ_t = η·√((1−ᾱ_{t-1})/(1−ᾱ_t))·√(1−ᾱ_t/ᾱ_{t-1})
        let variance = (1.0 - a_prev) / (1.0 - a_t) * (1.0 - a_t / a_prev);
        let std_dev = self.0.config.eta * variance.sqrt();
        let direction = eps.affine((1.0 - a_prev - std_dev * std_dev).max(0.0).sqrt(), 0.0)?;
        let mut x_prev = (x0.affine(a_prev.sqrt(), 0.0)? + direction)?;
        if self.0.config.eta > 0.0 {
            x_prev = (x_prev + noise.affine(std_dev, 0.0)?)?;
        }
        Ok((x_prev, x0))
    }
}

/// One step of DDIM inversion, as diffusers' `DDIMInverseScheduler.step`: from `x` at the
/// grid's timestep before `t` (t − T/N, or the clean picture with ᾱ = 1 under
/// `set_alpha_to_one`) to x at `t`, using the model output at `t`. Returns (x_t, x0_pred).
pub fn invert_step(
    schedule: &NoiseSchedule,
    config: &SamplerConfig,
    model_output: &Tensor,
    t: usize,
    x: &Tensor,
) -> Result<(Tensor, Tensor)> {
    let ac = &schedule.alphas_cumprod;
    let from = t as i64 - (schedule.len() / config.steps) as i64;
    let initial_alpha = if config.set_alpha_to_one { 1.0 } else { ac[0] };
    let a_from = if from >= 0 {
        ac[from as usize]
    } else {
        initial_alpha
    };
    let a_t = ac[t];
    let (x0, eps) = predict_x0_eps(config.prediction, model_output, x, a_from)?;
    let x0 = config.process_x0(x0)?;
    // x_t = √ᾱ_t·x0 + √(1−ᾱ_t)·ε
    let x_t = (x0.affine(a_t.sqrt(), 0.0)? + eps.affine((1.0 - a_t).sqrt(), 0.0)?)?;
    Ok((x_t, x0))
}
