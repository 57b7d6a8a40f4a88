//! DPM-Solver++(2M) (Lu et al. 2022), as diffusers' `DPMSolverMultistepScheduler` with
//! `algorithm_type="dpmsolver++"`, `solver_order=2`, `solver_type="midpoint"`,
//! `final_sigmas_type="zero"`: data-prediction multistep updates in λ = log(α/σ).

use candle_core::Tensor;

use super::{dpm_timesteps, predict_x0_eps, Sampler, SamplerConfig};
use crate::error::Result;
use crate::schedule::NoiseSchedule;

pub struct DpmSolverPP {
    timesteps: Vec<usize>,
    /// σ_i = √((1−ᾱ)/ᾱ) at each timestep, then 0; rounded to f32 as diffusers stores them.
    sigmas: Vec<f64>,
    config: SamplerConfig,
    /// The previous step's x0 prediction.
    last_x0: Option<Tensor>,
}

impl DpmSolverPP {
    pub fn new(schedule: &NoiseSchedule, config: &SamplerConfig) -> Self {
        let timesteps = dpm_timesteps(
            schedule.len(),
            config.steps,
            config.timestep_spacing,
            config.steps_offset,
        );
        let mut sigmas: Vec<f64> = timesteps
            .iter()
            .map(|&t| {
                let a = schedule.alphas_cumprod[t] as f32;
                (((1.0 - a) / a).sqrt()) as f64
            })
            .collect();
        sigmas.push(0.0);
        Self {
            timesteps,
            sigmas,
            config: *config,
            last_x0: None,
        }
    }
}

/// (α_t, σ_t) of the VP process from σ = σ_t/α_t.
fn alpha_sigma(sigma: f64) -> (f64, f64) {
    let alpha = 1.0 / (sigma * sigma + 1.0).sqrt();
    (alpha, sigma * alpha)
}

/// λ = log α − log σ.
fn lambda(alpha: f64, sigma: f64) -> f64 {
    alpha.ln() - sigma.ln()
}

impl Sampler for DpmSolverPP {
    fn timesteps(&self) -> &[usize] {
        &self.timesteps
    }

    fn uses_noise(&self) -> bool {
        false
    }

    fn step(
        &mut self,
        model_output: &Tensor,
        i: usize,
        x_t: &Tensor,
        _noise: &Tensor,
    ) -> Result<(Tensor, Tensor)> {
        let n = self.timesteps.len();
        let (alpha_s0, sigma_s0) = alpha_sigma(self.sigmas[i]);
        // convert_model_output: the data prediction x0 = (x − σ_t·ε)/α_t.
        let a_bar = alpha_s0 * alpha_s0;
        let x0 = predict_x0_eps(self.config.prediction, model_output, x_t, a_bar)?.0;
        let x0 = self.config.process_x0(x0)?;
        // diffusers takes a first-order step at the start (no history) and, with
        // final_sigmas_type "zero", always at the last step; second order otherwise.
        let first_order = self.last_x0.is_none() || i == n - 1;
        let (alpha_t, sigma_t) = alpha_sigma(self.sigmas[i + 1]);
        let h = lambda(alpha_t, sigma_t) - lambda(alpha_s0, sigma_s0);
        let phi = alpha_t * ((-h).exp() - 1.0); // α_t·(e^{−h} − 1)
        let ratio = sigma_t / sigma_s0;
        let x_prev = match &self.last_x0 {
            Some(m1) if !first_order => {
                let (alpha_s1, sigma_s1) = alpha_sigma(self.sigmas[i - 1]);
                let r0 = (lambda(alpha_s0, sigma_s0) - lambda(alpha_s1, sigma_s1)) / h;
                // D1 = (m0 − m1)/r0;  x = (σ_t/σ_s)·x − φ·D0 − ½·φ·D1  (midpoint)
                let d1 = (&x0 - m1)?.affine(1.0 / r0, 0.0)?;
                ((x_t.affine(ratio, 0.0)? - x0.affine(phi, 0.0)?)? - d1.affine(0.5 * phi, 0.0)?)?
            }
            _ => (x_t.affine(ratio, 0.0)? - x0.affine(phi, 0.0)?)?,
        };
        self.last_x0 = Some(x0.clone());
        Ok((x_prev, x0))
    }
}
