//! Every sampling default, written once: what `generate`, `compare`, `img2img`, `serve`,
//! `eval` and `bench` use for an option that is left out. A model file may record the
//! defaults it was measured with (its metadata's `sampling`); [`SamplingDefaults::LIBRARY`]
//! is the fallback, and `LoadedModel::defaults` picks between them.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::sampler::SamplerKind;

/// The sampling settings a run takes when the caller leaves them out.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SamplingDefaults {
    /// The sampler that scored best with `diffuse eval` for the shipped models.
    pub sampler: SamplerKind,
    /// Denoising steps.
    pub steps: usize,
    /// Classifier-free guidance scale w (1 = no guidance).
    pub guidance: f64,
    /// Dynamic thresholding of x0 (diffusers' `thresholding`), on as diffusers recommends
    /// for pixel-space models.
    pub thresholding: bool,
    /// DDIM's η: 0 is deterministic.
    pub eta: f64,
    /// Images side by side in one CLI run.
    pub num_images: usize,
    /// Images per column in the playground, where one image streams fastest.
    pub playground_images: usize,
    /// The smallest side, in pixels, an image is shown at (frames, strips, grids).
    pub display_side: u32,
    /// GIF frames per second.
    pub fps: f64,
    /// img2img: how much of the schedule is redone.
    pub strength: f64,
    /// Steps that get cross-attention maps.
    pub attention_steps: usize,
}

impl SamplingDefaults {
    /// The library's defaults, measured for `emoji64` and `shapes32` (see their model cards).
    pub const LIBRARY: SamplingDefaults = SamplingDefaults {
        sampler: SamplerKind::Ddpm,
        steps: 20,
        guidance: 3.0,
        thresholding: true,
        eta: 0.0,
        num_images: 4,
        playground_images: 1,
        display_side: 192,
        fps: 10.0,
        strength: 0.6,
        attention_steps: 8,
    };
}

impl Default for SamplingDefaults {
    fn default() -> Self {
        Self::LIBRARY
    }
}

/// The most images one run makes.
pub const MAX_NUM_IMAGES: usize = 64;

/// The largest guidance scale a run takes, in the CLI and the playground alike.
pub const MAX_GUIDANCE: f64 = 50.0;

/// Refuses a guidance scale that is not a number in 0..=[`MAX_GUIDANCE`], naming `flag`.
pub fn check_guidance(flag: &'static str, guidance: f64) -> Result<()> {
    if guidance.is_finite() && (0.0..=MAX_GUIDANCE).contains(&guidance) {
        return Ok(());
    }
    let why = format!("must be a number in 0..={MAX_GUIDANCE}");
    Err(Error::option_is(flag, guidance, why))
}
