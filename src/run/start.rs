//! Where a run's columns start, and what takes their steps: seeded pure noise (generate),
//! a given state (`--from-noise`), a noised picture (img2img, SDEdit), or pure noise around
//! a kept region (inpaint, by the replace method or RePaint). Each column draws from its
//! own seeded RNG in the same order every time: the starting noise first, then what the
//! start needs, then each step's noise.

use candle_core::Tensor;

use crate::edit::inpaint::{replace_start, InpaintMethod, Known, Replace};
use crate::edit::repaint::RePaint;
use crate::error::Result;
use crate::model::LoadedModel;
use crate::pipeline::{self, Guided};
use crate::rng::{self, Rng};
use crate::sampler::{Sampler, SamplerConfig};

/// How the columns start.
#[derive(Clone)]
pub enum Start {
    /// Seeded pure noise x_T, taken to be the state at the run's first step.
    Noise,
    /// A given state `[K, C, H, W]`, taken to be the state at the run's first step.
    State(Tensor),
    /// img2img: the picture `[K, C, H, W]` in model space, noised to the first step's
    /// timestep (or the picture itself when no step is left to run).
    Picture(Tensor),
    /// inpaint: pure noise where the picture is repainted; `known.image` is `[K, C, H, W]`.
    Inpaint {
        known: Known,
        method: InpaintMethod,
        /// RePaint's timestep sequence with its jumps (ignored by the replace method).
        repaint_timesteps: Vec<usize>,
    },
}

/// What takes a column's steps.
pub(super) enum Stepper<'m> {
    Sampler(Box<dyn Sampler + 'm>),
    RePaint(RePaint),
}

impl Stepper<'_> {
    pub(super) fn timesteps(&self) -> &[usize] {
        match self {
            Stepper::Sampler(s) => s.timesteps(),
            Stepper::RePaint(r) => r.timesteps(),
        }
    }

    /// Step `i` from `x`, drawing the step's noise from `rng`: (x after it, the x0 guess,
    /// the model output), each `[K, C, H, W]`.
    pub(super) fn step(
        &mut self,
        guided: &Guided,
        rng: &mut Rng,
        i: usize,
        x: &Tensor,
    ) -> Result<(Tensor, Tensor, Tensor)> {
        match self {
            Stepper::Sampler(s) => pipeline::guided_step(guided, s.as_mut(), rng, i, x),
            Stepper::RePaint(r) => {
                let (shape, device) = (x.shape().clone(), x.device().clone());
                let draw = || rng::randn(rng, shape.clone(), &device);
                r.step(|x, t| guided.predict(x, t), i, x, draw)
            }
        }
    }
}

impl Start {
    /// One column's first state and stepper. `start` is the sampler step it starts at.
    pub(super) fn begin<'m>(
        &self,
        model: &'m LoadedModel,
        config: SamplerConfig,
        guided: &Guided,
        rng: &mut Rng,
        start: usize,
    ) -> Result<(Tensor, Stepper<'m>)> {
        let sampler = model.sampler(config)?;
        let plain = |x: Tensor, sampler| Ok((x, Stepper::Sampler(sampler)));
        match self {
            Start::Noise => plain(pipeline::initial_noise(guided, rng)?, sampler),
            Start::State(x) => plain(x.clone(), sampler),
            Start::Picture(x_in) => {
                let noise = rng::randn(rng, x_in.shape().clone(), x_in.device())?;
                let Some(&t) = sampler.timesteps().get(start) else {
                    return plain(x_in.clone(), sampler);
                };
                let k = x_in.dim(0)?;
                let x = model.schedule.q_sample(x_in, &vec![t; k], &noise)?; // [K, C, H, W]
                plain(x, sampler)
            }
            Start::Inpaint {
                known,
                method,
                repaint_timesteps,
            } => {
                let noise = pipeline::initial_noise(guided, rng)?; // [K, C, H, W]
                let config = model.with_prediction(config);
                if *method == InpaintMethod::Repaint {
                    let timesteps = repaint_timesteps.clone();
                    let repaint = RePaint::new(&model.schedule, config, timesteps, known.clone());
                    return Ok((noise, Stepper::RePaint(repaint)));
                }
                // One ε noises the kept region at every step, drawn after the starting noise.
                let eps = rng::randn(rng, noise.shape().clone(), noise.device())?;
                let t0 = sampler.timesteps()[0];
                let x = replace_start(&model.schedule, known, t0, &eps, &noise)?;
                let replace = Replace::new(sampler, &model.schedule, known.clone(), eps);
                Ok((x, Stepper::Sampler(Box::new(replace))))
            }
        }
    }
}
