//! DDPM ancestral sampling (Ho et al. 2020, Algorithm 2) as diffusers' `DDPMScheduler`
//! computes it: `fixed_small` variance, optional `clip_sample`, and `set_timesteps`'
//! "leading" spacing when fewer steps than T are used.

use candle_core::{Result, Tensor};

use crate::schedule::NoiseSchedule;
use crate::unet::Prediction;

/// A DDPM sampler over `num_inference_steps` of a schedule.
pub struct Ddpm<'a> {
    pub schedule: &'a NoiseSchedule,
    /// Timesteps from noisy to clean, e.g. [999, 998, …, 0] or [980, 960, …, 0].
    pub timesteps: Vec<usize>,
    /// Clamp the x0 prediction to [-1, 1] (diffusers `clip_sample`, default true).
    pub clip_sample: bool,
    pub prediction: Prediction,
}

impl<'a> Ddpm<'a> {
    /// diffusers' `set_timesteps` with `timestep_spacing="leading"`, `steps_offset=0`.
    pub fn new(schedule: &'a NoiseSchedule, steps: usize, prediction: Prediction) -> Self {
        let t = schedule.len();
        let ratio = t / steps.max(1);
        let timesteps = (0..steps).rev().map(|i| i * ratio).collect();
        Self {
            schedule,
            timesteps,
            clip_sample: true,
            prediction,
        }
    }

    fn prev_timestep(&self, t: usize) -> i64 {
        t as i64 - (self.schedule.len() / self.timesteps.len()) as i64
    }

    /// One reverse step from `x_t` given the model output at `t`, with `noise` for the
    /// variance term. Returns (x_{t-1}, predicted x0).
    pub fn step(
        &self,
        model_output: &Tensor,
        t: usize,
        x_t: &Tensor,
        noise: &Tensor,
    ) -> Result<(Tensor, Tensor)> {
        let ac = &self.schedule.alphas_cumprod;
        let prev_t = self.prev_timestep(t);
        let a_t = ac[t];
        let a_prev = if prev_t >= 0 {
            ac[prev_t as usize]
        } else {
            1.0
        };
        let beta_prod_t = 1.0 - a_t;
        let beta_prod_prev = 1.0 - a_prev;
        let current_alpha_t = a_t / a_prev;
        let current_beta_t = 1.0 - current_alpha_t;
        let mut x0 = match self.prediction {
            // x0 = (x_t - √(1-ᾱ_t)·ε) / √ᾱ_t
            Prediction::Epsilon => ((x_t - model_output.affine(beta_prod_t.sqrt(), 0.0)?)?)
                .affine(1.0 / a_t.sqrt(), 0.0)?,
            // x0 = √ᾱ_t·x_t − √(1-ᾱ_t)·v
            Prediction::VPrediction => {
                (x_t.affine(a_t.sqrt(), 0.0)? - model_output.affine(beta_prod_t.sqrt(), 0.0)?)?
            }
        };
        if self.clip_sample {
            x0 = x0.clamp(-1f32, 1f32)?;
        }
        let x0_coeff = a_prev.sqrt() * current_beta_t / beta_prod_t;
        let xt_coeff = current_alpha_t.sqrt() * beta_prod_prev / beta_prod_t;
        let mean = (x0.affine(x0_coeff, 0.0)? + x_t.affine(xt_coeff, 0.0)?)?;
        let x_prev = if t > 0 {
            let variance = (beta_prod_prev / beta_prod_t * current_beta_t).max(1e-20);
            (mean + noise.affine(variance.sqrt(), 0.0)?)?
        } else {
            mean
        };
        Ok((x_prev, x0))
    }
}
