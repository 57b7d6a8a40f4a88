//! `diffuse bench --model DIR` for a diffusers folder: the denoiser's forward pass at
//! several batch sizes (the part of the suite that does not depend on diffuse's own network),
//! with the same timing loop and device sync as the rest of the suite.

use candle_core::Tensor;
use serde::Serialize;

use super::{sync, time_it, Timing};
use crate::error::Result;
use crate::model::LoadedModel;
use crate::progress::Progress;
use crate::rng;

/// One forward figure.
#[derive(Debug, Clone, Serialize)]
pub struct ForwardRow {
    pub batch: usize,
    pub timing: Timing,
    /// Images per second.
    pub images_per_s: f64,
}

/// What `diffuse bench --model DIR` measured.
#[derive(Debug, Clone, Serialize)]
pub struct LoadedBench {
    pub model: String,
    pub sample_shape: (usize, usize, usize),
    pub threads: usize,
    pub rows: Vec<ForwardRow>,
}

/// Times one unconditional forward pass of `model` at each batch size in `batches`, `runs`
/// times after one warm-up, from seeded noise at t = 500.
pub fn forward(
    model: &LoadedModel,
    batches: &[usize],
    runs: usize,
    progress: &dyn Progress,
) -> Result<LoadedBench> {
    let d = model.net.denoiser();
    let (c, h, w) = d.sample_shape();
    progress.stage("forward", batches.len() as u64);
    let mut rows = Vec::new();
    for &b in batches {
        let mut r = rng::rng(0);
        let x = rng::randn(&mut r, (b, c, h, w), d.device())?; // [B, C, H, W]
        let ids = Tensor::zeros(
            (b, model.meta.unet.vocab.slots.len()),
            candle_core::DType::U32,
            d.device(),
        )?;
        let cond = d.condition(&ids)?;
        let t = vec![500.0; b];
        let timing = time_it(1, runs, || sync(&d.forward_conditioned(&x, &t, &cond)?))?;
        rows.push(ForwardRow {
            batch: b,
            images_per_s: b as f64 / (timing.median_ms / 1e3),
            timing,
        });
        progress.advance(1);
    }
    progress.finish();
    Ok(LoadedBench {
        model: model.name.clone(),
        sample_shape: (c, h, w),
        threads: rayon::current_num_threads(),
        rows,
    })
}
