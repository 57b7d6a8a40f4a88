//! Inpainting with a denoiser that was not trained for it: the known region is imposed after
//! every step, so the model fills in the rest to agree with it.
//! - [`Replace`]: diffusers' method for plain UNets. After each step the kept region becomes
//!   the original picture noised to the timestep of the new sample, with one ε for the whole
//!   run; after the last step it is the picture itself.
//! - [`super::repaint`]: RePaint (Lugmayr et al. 2022), which also jumps back in time so the
//!   filled region harmonises with the kept one.

use std::fmt;
use std::str::FromStr;

use candle_core::Tensor;
use serde::Serialize;

use crate::error::{Error, Result};
use crate::sampler::Sampler;
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
#[derive(Clone)]
pub struct Known {
    /// The original `[B, C, H, W]` in model space.
    pub image: Tensor,
    /// 1 where the picture is kept, 0 where it is repainted, `[1, 1, H, W]`.
    pub keep: Tensor,
}

/// A sampler that imposes the known region after every step of `inner` (the replace method).
pub struct Replace<'s> {
    inner: Box<dyn Sampler + 's>,
    schedule: NoiseSchedule,
    known: Known,
    /// The ε that noises the known region at every step.
    eps: Tensor,
}

impl<'s> Replace<'s> {
    /// Wraps `inner`; `eps` `[B, C, H, W]` noises the known region at every step.
    pub fn new(
        inner: Box<dyn Sampler + 's>,
        schedule: &NoiseSchedule,
        known: Known,
        eps: Tensor,
    ) -> Self {
        Self {
            inner,
            schedule: schedule.clone(),
            known,
            eps,
        }
    }

    /// The known region at timestep `t` (the picture itself for None).
    fn known_at(&self, t: Option<usize>) -> Result<Tensor> {
        known_at(&self.schedule, &self.known, t, &self.eps)
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

impl Sampler for Replace<'_> {
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

/// `keep`·a + (1 − `keep`)·b, with `keep` `[B or 1, 1, H, W]` broadcast over channels.
pub fn blend(a: &Tensor, b: &Tensor, keep: &Tensor) -> Result<Tensor> {
    let keep = keep.broadcast_as(a.shape())?;
    Ok((a.mul(&keep)? + b.mul(&keep.affine(-1.0, 1.0)?)?)?)
}
