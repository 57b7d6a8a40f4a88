//! Inpainting with a denoiser that was not trained for it: the known region is imposed after
//! every step, so the model fills in the rest to agree with it.
//! - [`Replace`]: diffusers' method for plain UNets. After each step the kept region becomes
//!   the original picture noised to the timestep of the new sample, with one ε for the whole
//!   run; after the last step it is the picture itself.
//! - [`repaint`]: RePaint (Lugmayr et al. 2022), which also jumps back in time so the filled
//!   region harmonises with the kept one.

use std::fmt;
use std::str::FromStr;

use candle_core::Tensor;
use serde::Serialize;

use crate::error::{Error, Result};
use crate::pipeline::StepEvent;
use crate::sampler::repaint::{blend, repaint_step};
use crate::sampler::{Sampler, SamplerConfig};
use crate::schedule::NoiseSchedule;

/// How the known region is imposed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum InpaintMethod {
    Replace,
    Repaint,
}

impl FromStr for InpaintMethod {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "replace" => Ok(Self::Replace),
            "repaint" => Ok(Self::Repaint),
            _ => Err(Error::unknown(
                "inpainting method",
                s,
                &["replace", "repaint"],
            )),
        }
    }
}

impl fmt::Display for InpaintMethod {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Replace => "replace",
            Self::Repaint => "repaint",
        })
    }
}

/// What is known: the original picture and where it is kept.
pub struct Known {
    /// The original `[B, C, H, W]` in model space.
    pub image: Tensor,
    /// 1 where the picture is kept, 0 where it is repainted, `[1, 1, H, W]`.
    pub keep: Tensor,
}

/// A sampler that imposes the known region after every step of `inner` (the replace method).
pub struct Replace<'a, 's> {
    inner: &'a mut (dyn Sampler + 's),
    schedule: &'a NoiseSchedule,
    known: &'a Known,
    /// The ε that noises the known region at every step.
    eps: Tensor,
}

impl<'a, 's> Replace<'a, 's> {
    /// Wraps `inner`; `eps` `[B, C, H, W]` noises the known region at every step.
    pub fn new(
        inner: &'a mut (dyn Sampler + 's),
        schedule: &'a NoiseSchedule,
        known: &'a Known,
        eps: Tensor,
    ) -> Self {
        Self {
            inner,
            schedule,
            known,
            eps,
        }
    }

    /// The known region at timestep `t` (the picture itself for None).
    fn known_at(&self, t: Option<usize>) -> Result<Tensor> {
        known_at(self.schedule, self.known, t, &self.eps)
    }
}

/// The known picture noised to timestep `t` with `eps` (the picture itself for None).
fn known_at(
    schedule: &NoiseSchedule,
    known: &Known,
    t: Option<usize>,
    eps: &Tensor,
) -> Result<Tensor> {
    match t {
        Some(t) => {
            let b = known.image.dim(0)?;
            schedule.q_sample(&known.image, &vec![t; b], eps)
        }
        None => Ok(known.image.clone()),
    }
}

/// The replace method's first sample: `noise` where the picture is repainted, the picture
/// noised to the first timestep `t0` with `eps` where it is kept.
pub fn replace_start(
    schedule: &NoiseSchedule,
    known: &Known,
    t0: usize,
    eps: &Tensor,
    noise: &Tensor,
) -> Result<Tensor> {
    blend(
        &known_at(schedule, known, Some(t0), eps)?,
        noise,
        &known.keep,
    )
}

impl Sampler for Replace<'_, '_> {
    fn timesteps(&self) -> &[usize] {
        self.inner.timesteps()
    }

    fn uses_noise(&self) -> bool {
        self.inner.uses_noise()
    }

    fn step(
        &mut self,
        model_output: &Tensor,
        i: usize,
        x_t: &Tensor,
        noise: &Tensor,
    ) -> Result<(Tensor, Tensor)> {
        let (x_prev, x0) = self.inner.step(model_output, i, x_t, noise)?;
        let next = self.inner.timesteps().get(i + 1).copied();
        let x_prev = blend(&self.known_at(next)?, &x_prev, &self.known.keep)?;
        Ok((x_prev, x0))
    }
}

/// RePaint over a timestep sequence from
/// [`repaint_timesteps`](crate::sampler::repaint::repaint_timesteps).
pub struct RePaint<'a> {
    pub schedule: &'a NoiseSchedule,
    /// Steps, η, `clip_sample`/thresholding and the prediction type.
    pub config: SamplerConfig,
    pub timesteps: &'a [usize],
}

impl RePaint<'_> {
    /// Runs from `noise` as diffusers' `RePaintPipeline`: a timestep below the one before
    /// is a model step (`predict(x_t, t)`), one above it an undo step that noises the sample
    /// forward one training timestep at a time. `draw()` gives each fresh noise (one per
    /// model step, T/N per undo step). `on_step` sees every state; an undo step repeats the
    /// last x0 prediction and model output.
    pub fn run(
        &self,
        mut predict: impl FnMut(&Tensor, usize) -> Result<Tensor>,
        known: &Known,
        noise: Tensor,
        mut draw: impl FnMut() -> Result<Tensor>,
        mut on_step: impl FnMut(StepEvent),
    ) -> Result<Tensor> {
        let (schedule, config) = (self.schedule, &self.config);
        let ratio = schedule.len() / config.steps.min(schedule.len());
        let mut x = noise; // [B, C, H, W]
        let (mut x0, mut eps) = (x.zeros_like()?, x.zeros_like()?);
        let mut t_last = self.timesteps.first().map_or(0, |t| t + 1);
        let n = self.timesteps.len();
        for (i, &t) in self.timesteps.iter().enumerate() {
            if t < t_last {
                eps = predict(&x, t)?;
                let z = draw()?;
                (x, x0) =
                    repaint_step(schedule, config, &eps, t, &x, &known.image, &known.keep, &z)?;
            } else {
                for k in 0..ratio {
                    x = schedule.q_step(&x, t_last + k, &draw()?)?;
                }
            }
            t_last = t;
            on_step(StepEvent {
                i,
                n,
                t,
                x: &x,
                x0: &x0,
                model_output: &eps,
            });
        }
        // The last step's known part is the original at ᾱ = 1: the picture itself.
        Ok(x)
    }
}
