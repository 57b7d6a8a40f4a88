//! DDIM inversion: deterministic DDIM (η = 0) is a discretised ODE, so it can be run
//! backwards, from a picture to the noise that the sampler turns back into it. Also the
//! reconstruction error, as PSNR.

use candle_core::Tensor;

use crate::error::{Error, Result};
use crate::pipeline::StepEvent;
use crate::sampler::ddim::invert_step;
use crate::sampler::{ddim_timesteps, SamplerConfig, SamplerKind};
use crate::schedule::NoiseSchedule;

/// Refuses a sampler configuration that cannot be inverted: only DDIM with η = 0 is
/// deterministic and invertible.
pub fn check_invertible(config: &SamplerConfig) -> Result<()> {
    if config.kind != SamplerKind::Ddim {
        return Err(Error::option_is(
            "sampler",
            config.kind,
            "cannot be inverted: only deterministic DDIM (--sampler ddim --eta 0) can",
        ));
    }
    if config.eta != 0.0 {
        return Err(Error::option_is(
            "eta",
            config.eta,
            "makes DDIM stochastic, which cannot be inverted: use --eta 0",
        ));
    }
    Ok(())
}

/// The DDIM timesteps of `config` (noisiest first).
pub fn timesteps(schedule: &NoiseSchedule, config: &SamplerConfig) -> Vec<usize> {
    ddim_timesteps(
        schedule.len(),
        config.steps,
        config.timestep_spacing,
        config.steps_offset,
    )
}

/// Inverts the picture `x` `[B, C, H, W]` (model space) to the state at sampler step
/// `start_step` (0: the starting noise x_T), going up the DDIM timesteps from the cleanest.
/// `predict(x, t)` is the (guided) model output; `on_step` sees each state, its `i`
/// counting the inversion steps.
pub fn ddim_invert(
    mut predict: impl FnMut(&Tensor, usize) -> Result<Tensor>,
    schedule: &NoiseSchedule,
    config: &SamplerConfig,
    x: &Tensor,
    start_step: usize,
    mut on_step: impl FnMut(StepEvent),
) -> Result<Tensor> {
    check_invertible(config)?;
    let grid = timesteps(schedule, config);
    let up: Vec<usize> = grid[start_step.min(grid.len())..]
        .iter()
        .rev()
        .copied()
        .collect();
    let mut x = x.clone();
    for (i, &t) in up.iter().enumerate() {
        let eps = predict(&x, t)?;
        let (next, x0) = invert_step(schedule, config, &eps, t, &x)?;
        x = next;
        on_step(StepEvent {
            i,
            n: up.len(),
            t,
            x: &x,
            x0: &x0,
            model_output: &eps,
        });
    }
    Ok(x)
}

/// Peak signal-to-noise ratio in dB between two images in model space ([-1, 1], peak 2),
/// over every element: 10·log10(2² / MSE); infinite when they are equal.
pub fn psnr(a: &Tensor, b: &Tensor) -> Result<f64> {
    let mse = (a - b)?
        .sqr()?
        .mean_all()?
        .to_dtype(candle_core::DType::F64)?
        .to_scalar::<f64>()?;
    Ok(10.0 * (4.0 / mse).log10())
}
