//! `diffuse nearest --copy-rate N`: how often a model copies its training data. N fresh
//! scenes come from the generator with a seed the model never trained on; the model draws
//! one sample for each fresh scene's caption at its defaults; one pass over the training
//! stream finds every picture's nearest training scene. A sample counts as a copy when it is
//! closer to a training scene than the 1st percentile of the fresh scenes' distances: closer
//! than 99 % of new pictures of the same kind come by chance (after Carlini et al. 2023, who
//! call a sample memorised when it is far closer to one training image than to the rest).

use std::path::PathBuf;

use image::RgbImage;
use serde::Serialize;

use crate::error::{Error, Result};
use crate::io::fs;
use crate::model::LoadedModel;
use crate::nearest::{search, DataStream, Scene};
use crate::progress::Progress;
use crate::render::plot::{self, Panel, Series};
use crate::rng;

/// The most samples one measurement draws.
pub const MAX_COPY_RATE_SAMPLES: usize = 4096;
/// The fresh scenes' seed: the training seed plus this, never trained on.
pub const FRESH_SEED_OFFSET: u64 = 1_000_003;
/// The percentile of the fresh distances below which a sample is a copy.
pub const PERCENTILE: f64 = 1.0;

/// What `--copy-rate` was asked to do.
pub struct CopyRateOptions {
    pub samples: usize,
    pub seed: u64,
    /// The distributions' plot.
    pub out: PathBuf,
    pub force: bool,
}

/// The measurement.
#[derive(Debug, Serialize)]
pub struct CopyRateReport {
    pub model: String,
    pub stream: DataStream,
    pub fresh_seed: u64,
    pub samples: usize,
    /// Each sample's and each fresh scene's distance to its nearest training scene.
    pub sample_distances: Vec<f64>,
    pub fresh_distances: Vec<f64>,
    /// The 1st percentile of the fresh distances.
    pub threshold: f64,
    /// The share of samples nearer than the threshold.
    pub copy_rate: f64,
    pub copies: usize,
    pub out: PathBuf,
    pub seconds: f64,
}

/// The `p`-th percentile (nearest rank) of `values`.
pub fn percentile(values: &[f64], p: f64) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let rank = ((p / 100.0) * v.len() as f64).ceil().max(1.0) as usize;
    v[(rank - 1).min(v.len() - 1)]
}

/// One sample per fresh scene's caption, at the model's defaults, from `seed`.
fn draw(
    model: &LoadedModel,
    fresh: &[Scene],
    seed: u64,
    progress: &dyn Progress,
) -> Result<Vec<RgbImage>> {
    let d = model.defaults();
    let config = model.with_prediction(model.default_sampler(d.sampler, d.steps));
    let mut rng = rng::rng(seed);
    progress.stage("sampling", (fresh.len() * config.steps) as u64);
    let mut out = Vec::with_capacity(fresh.len());
    for chunk in fresh.chunks(32) {
        let ids = chunk
            .iter()
            .map(|s| crate::prompt::encode(&s.caption, &model.meta.unet))
            .collect::<Result<Vec<_>>>()?;
        let images =
            super::eval::sample_chunk(model, config, d.guidance, &ids, &mut rng, progress)?;
        out.extend(images);
    }
    progress.finish();
    Ok(out)
}

/// The two distance distributions as histograms.
fn plot_distributions(r: &CopyRateReport) -> Result<RgbImage> {
    let max = r
        .sample_distances
        .iter()
        .chain(&r.fresh_distances)
        .fold(0f64, |a, &b| a.max(b));
    let bins = 40;
    let width = (max / bins as f64).max(1e-6);
    let hist = |v: &[f64]| -> Vec<(f64, f64)> {
        let mut counts = vec![0usize; bins + 1];
        for &d in v {
            counts[((d / width) as usize).min(bins)] += 1;
        }
        let n = v.len().max(1) as f64;
        counts
            .iter()
            .enumerate()
            .map(|(i, &c)| ((i as f64 + 0.5) * width, c as f64 / n))
            .collect()
    };
    let panel = Panel {
        title: format!(
            "distance to the nearest of {} training scenes; copy rate {:.1} % (threshold {:.4})",
            r.stream.len(),
            100.0 * r.copy_rate,
            r.threshold
        ),
        x_label: "RMS distance in [0, 1]".into(),
        y_label: "share of pictures".into(),
        series: vec![
            Series {
                name: format!("{} samples of the model", r.samples),
                points: hist(&r.sample_distances),
            },
            Series {
                name: format!("{} fresh scenes (never trained on)", r.samples),
                points: hist(&r.fresh_distances),
            },
            Series {
                name: "1st percentile of the fresh scenes".into(),
                points: vec![(r.threshold, 0.0), (r.threshold, 0.2)],
            },
        ],
        log_x: false,
    };
    plot::render(&[panel], 900, 480)
}

/// Measures the copy rate of `model` over its training stream.
pub fn run(
    model: &LoadedModel,
    opts: &CopyRateOptions,
    progress: &dyn Progress,
) -> Result<CopyRateReport> {
    let began = std::time::Instant::now();
    if opts.samples < 2 || opts.samples > MAX_COPY_RATE_SAMPLES {
        let range = format!("2..={MAX_COPY_RATE_SAMPLES}");
        return Err(Error::out_of_range("copy-rate", opts.samples, range));
    }
    let stream = super::nearest::stream_of(model)?;
    fs::check_overwrite(&opts.out, opts.force)?;
    let fresh_stream = DataStream {
        data_seed: stream.data_seed + FRESH_SEED_OFFSET,
        ..stream
    };
    let fresh = fresh_stream.pictures(0, opts.samples);
    let samples = draw(model, &fresh, opts.seed, progress)?;
    let queries: Vec<RgbImage> = samples
        .into_iter()
        .chain(fresh.into_iter().map(|s| s.picture))
        .collect();
    progress.stage("searching", stream.len());
    let found = search(&stream, &queries, 1, |n| progress.advance(n))?;
    progress.finish();
    let nearest: Vec<f64> = found.iter().map(|f| f[0].distance).collect();
    let (sample_distances, fresh_distances) = (
        nearest[..opts.samples].to_vec(),
        nearest[opts.samples..].to_vec(),
    );
    let threshold = percentile(&fresh_distances, PERCENTILE);
    let copies = sample_distances.iter().filter(|&&d| d < threshold).count();
    let mut report = CopyRateReport {
        model: model.name.clone(),
        stream,
        fresh_seed: fresh_stream.data_seed,
        samples: opts.samples,
        copy_rate: copies as f64 / opts.samples as f64,
        copies,
        sample_distances,
        fresh_distances,
        threshold,
        out: opts.out.clone(),
        seconds: 0.0,
    };
    crate::render::save_png(&plot_distributions(&report)?, &opts.out)?;
    report.seconds = began.elapsed().as_secs_f64();
    Ok(report)
}
