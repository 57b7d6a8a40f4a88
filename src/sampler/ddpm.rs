//! DDPM ancestral sampling (Ho et al. 2020, Algorithm 2) as diffusers' `DDPMScheduler.step`
//! computes it: `fixed_small` variance, optional `clip_sample`; with fewer steps than T each
//! step goes to the next timestep in the list.

use candle_core::Tensor;

use super::{predict_x0_eps, DiscreteGrid, Sampler, SamplerConfig};
use crate::error::Result;
use crate::schedule::NoiseSchedule;

pub struct Ddpm<'a>(DiscreteGrid<'a>);

impl<'a> Ddpm<'a> {
    pub fn new(schedule: &'a NoiseSchedule, config: &SamplerConfig) -> Self {
        Self(DiscreteGrid::new(schedule, config))
    }
}

impl Sampler for Ddpm<'_> {
    fn timesteps(&self) -> &[usize] {
        &self.0.timesteps
    }

    fn uses_noise(&self) -> bool {
        true
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
        let a_t = ac[t];
        let a_prev = self.0.timesteps.get(i + 1).map_or(1.0, |&p| ac[p]);
        let beta_prod_t = 1.0 - a_t;
        let beta_prod_prev = 1.0 - a_prev;
        let current_alpha_t = a_t / a_prev;
        let current_beta_t = 1.0 - current_alpha_t;
        let (x0, _) = predict_x0_eps(self.0.config.prediction, model_output, x_t, a_t)?;
        let x0 = self.0.config.process_x0(x0)?;
        // μ̃_t = √ᾱ_{t-1}·β_t/(1−ᾱ_t)·x0 + √α_t·(1−ᾱ_{t-1})/(1−ᾱ_t)·x_t  (eq. 7)
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
