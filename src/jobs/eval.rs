//! `diffuse eval`: samples every (colour, shape) prompt from a model and lets the judge score
//! them; `--self-test` scores the judge itself on fresh dataset images under added noise.

use serde::Serialize;

use crate::data::shapes::{self, Shape, COLOURS};
use crate::error::{Error, Result};
use crate::judge::{judge, Tally};
use crate::model::LoadedModel;
use crate::pipeline;
use crate::progress::Progress;
use crate::render;
use crate::rng;
use crate::sampler::{SamplerConfig, SamplerKind};

/// Samples per prompt by default (36 prompts × 8 = 288 samples).
pub const DEFAULT_SAMPLES_PER_PROMPT: usize = 8;
/// Seed of the sampling noise by default.
pub const DEFAULT_SEED: u64 = 0;
/// Step counts of `--sweep` by default.
pub const DEFAULT_SWEEP_STEPS: [usize; 4] = [5, 10, 20, 50];
/// The self-test: this many fresh dataset images, from this seed, at these noise levels.
pub const SELF_TEST_COUNT: usize = 1000;
pub const SELF_TEST_SEED: u64 = 4242;
pub const SELF_TEST_SIGMAS: [f64; 5] = [0.0, 0.05, 0.1, 0.2, 0.3];

/// Which judge `--self-test` checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Judge {
    Shapes,
    Emoji,
}

impl std::str::FromStr for Judge {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "shapes" => Ok(Judge::Shapes),
            "emoji" => Ok(Judge::Emoji),
            _ => Err(Error::unknown("judge", s, &["shapes", "emoji"])),
        }
    }
}

/// Settings of a model evaluation.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct EvalOptions {
    pub samples_per_prompt: usize,
    pub sampler: SamplerKind,
    /// Sampling steps (for DDPM, 1000 is the full chain).
    pub steps: usize,
    pub guidance: f64,
    /// Dynamic thresholding of x0 (diffusers' `thresholding`).
    pub thresholding: bool,
    pub seed: u64,
}

/// One prompt's row.
#[derive(Debug, Clone, Serialize)]
pub struct PromptRow {
    pub prompt: String,
    pub tally: Tally,
}

/// The result of `diffuse eval`.
#[derive(Debug, Clone, Serialize)]
pub struct EvalReport {
    /// The settings, flattened into the JSON object.
    #[serde(flatten)]
    pub options: EvalOptions,
    pub colour_accuracy: f64,
    pub shape_accuracy: f64,
    pub both_accuracy: f64,
    pub no_clear_object: usize,
    pub total: usize,
    pub prompts: Vec<PromptRow>,
    pub seconds: f64,
    /// Every sample, prompt by prompt (colour-major), `samples_per_prompt` each.
    #[serde(skip)]
    pub samples: Vec<(String, image::RgbImage, bool)>,
}

/// Images sampled per forward batch.
const CHUNK: usize = 72;

/// Checks the options and that the model is a shapes model, before any sampling.
fn check(model: &LoadedModel, opts: &EvalOptions) -> Result<SamplerConfig> {
    let config = check_sampling(model, opts)?;
    let vocab = &model.meta.unet.vocab;
    if vocab.slots.len() != 2 || vocab.slots[0].words.len() != 6 || vocab.slots[1].words.len() != 6
    {
        return Err(Error::Unsupported(
            "the shapes evaluation needs a shapes model (a colour and a shape slot of six words each)"
                .into(),
        ));
    }
    Ok(config)
}

/// Checks the sample count, steps and sampler options against the model, up front.
pub(crate) fn check_sampling(model: &LoadedModel, opts: &EvalOptions) -> Result<SamplerConfig> {
    if opts.samples_per_prompt == 0 {
        return Err(Error::option(
            "samples-per-prompt",
            0,
            "need at least one sample",
        ));
    }
    crate::defaults::check_guidance("guidance", opts.guidance)?;
    let t = model.schedule.len();
    if opts.steps == 0 || opts.steps > t {
        return Err(Error::out_of_range("steps", opts.steps, format!("1..={t}")));
    }
    let config = SamplerConfig {
        thresholding: opts.thresholding,
        ..model.sampler_config(opts.sampler, opts.steps)
    };
    model.sampler(config)?; // checks the sampler options once, up front
    Ok(config)
}

/// One guided sample per condition-id list (against the unconditional prompt), as 8-bit
/// pictures; one progress unit per sampler step.
pub(crate) fn sample_chunk(
    model: &LoadedModel,
    config: SamplerConfig,
    guidance: f64,
    ids: &[Vec<u32>],
    rng: &mut rng::Rng,
    progress: &dyn Progress,
) -> Result<Vec<image::RgbImage>> {
    let nulls = vec![crate::prompt::null_ids(&model.meta.unet); ids.len()];
    let guided = model.guided(guidance, ids, &nulls)?;
    let mut sampler = model.sampler(config)?;
    let x = pipeline::sample(&guided, sampler.as_mut(), rng, |_, _| progress.advance(1))?;
    let x = model.decode(&x)?; // [B, 3, S, S]
    (0..ids.len())
        .map(|i| render::to_rgb8(&x.get(i)?))
        .collect()
}

/// Samples K images for each of the 36 prompts and judges them.
pub fn evaluate(
    model: &LoadedModel,
    opts: &EvalOptions,
    progress: &dyn Progress,
) -> Result<EvalReport> {
    let config = check(model, opts)?;
    let start = std::time::Instant::now();
    let jobs: Vec<(usize, usize)> = (0..COLOURS.len())
        .flat_map(|c| (0..Shape::ALL.len()).map(move |s| (c, s)))
        .flat_map(|p| std::iter::repeat_n(p, opts.samples_per_prompt))
        .collect();
    let mut rng = rng::rng(opts.seed);
    let mut rows: Vec<PromptRow> = (0..36)
        .map(|i| PromptRow {
            prompt: format!("{} {}", COLOURS[i / 6].0, Shape::ALL[i % 6].name()),
            tally: Tally::default(),
        })
        .collect();
    let mut all = Tally::default();
    let mut samples = Vec::with_capacity(jobs.len());
    progress.stage("sampling", (jobs.len().div_ceil(CHUNK) * opts.steps) as u64);
    for chunk in jobs.chunks(CHUNK) {
        let ids: Vec<Vec<u32>> = chunk
            .iter()
            .map(|&(c, s)| vec![c as u32, s as u32])
            .collect();
        let images = sample_chunk(model, config, opts.guidance, &ids, &mut rng, progress)?;
        for (img, &(c, s)) in images.into_iter().zip(chunk) {
            let v = judge(&img);
            rows[c * 6 + s].tally.add(&v, Some(c), Some(s));
            all.add(&v, Some(c), Some(s));
            let right = v.colour == Some(c) && v.shape == Some(s);
            samples.push((rows[c * 6 + s].prompt.clone(), img, right));
        }
    }
    progress.finish();
    Ok(EvalReport {
        options: *opts,
        colour_accuracy: all.colour_accuracy(),
        shape_accuracy: all.shape_accuracy(),
        both_accuracy: all.both_accuracy(),
        no_clear_object: all.no_clear_object,
        total: all.total,
        prompts: rows,
        samples,
        seconds: start.elapsed().as_secs_f64(),
    })
}

/// The judge's accuracy on fresh dataset images at one noise level.
#[derive(Debug, Clone, Serialize)]
pub struct SelfTestRow {
    /// Standard deviation of the added Gaussian noise, in model units ([-1, 1] images).
    pub noise_sigma: f64,
    pub tally: Tally,
}

/// `img` with Gaussian noise of standard deviation `sigma` (in model units, so 127.5·σ in
/// 8-bit levels) added to every channel, drawn from `rng`; σ = 0 returns it unchanged.
pub(crate) fn add_noise(img: &image::RgbImage, sigma: f64, rng: &mut rng::Rng) -> image::RgbImage {
    use rand_distr::{Distribution, StandardNormal};
    let std = sigma * 127.5;
    image::RgbImage::from_fn(img.width(), img.height(), |x, y| {
        let p = img.get_pixel(x, y).0;
        image::Rgb(p.map(|v| {
            let n = if sigma > 0.0 {
                let z: f64 = StandardNormal.sample(rng);
                std * z
            } else {
                0.0
            };
            (v as f64 + n).round().clamp(0.0, 255.0) as u8
        }))
    })
}

/// Judges `count` fresh dataset images (seed `seed`) at each noise level.
pub fn self_test(count: usize, seed: u64, sigmas: &[f64]) -> Result<Vec<SelfTestRow>> {
    if let Some(&bad) = sigmas.iter().find(|s| !(s.is_finite() && **s >= 0.0)) {
        return Err(Error::option_is("sigma", bad, "must be a number ≥ 0"));
    }
    let images = shapes::render_range(seed, 0, count);
    let mut out = Vec::new();
    for &sigma in sigmas {
        let mut r = rng::rng(seed ^ 0x5eed);
        let mut tally = Tally::default();
        for (spec, img) in &images {
            let noisy = add_noise(img, sigma, &mut r);
            tally.add(&judge(&noisy), Some(spec.colour), Some(spec.shape));
        }
        out.push(SelfTestRow {
            noise_sigma: sigma,
            tally,
        });
    }
    Ok(out)
}

/// Saves the samples of `report` as one labelled picture: for one sample per prompt a 6×6
/// grid (a row per colour, a column per shape), else a row per prompt; cells upscaled 4×, and
/// those the judge got wrong framed in red.
pub fn save_grid(report: &EvalReport, path: &std::path::Path) -> Result<()> {
    let k = report.options.samples_per_prompt;
    let cols = if k == 1 { 6 } else { k };
    let cells: Vec<image::RgbImage> = report
        .samples
        .iter()
        .map(|(_, img, right)| {
            let mut big = render::upscale(img, 4);
            if !right {
                render::mark_wrong(&mut big);
            }
            big
        })
        .collect();
    let refs: Vec<&image::RgbImage> = cells.iter().collect();
    let labels: Vec<String> = report.samples.iter().map(|(p, _, _)| p.clone()).collect();
    render::save_png(&render::grid(&refs, cols, 4, Some(&labels)), path)
}

/// One point of a sweep: a sampler at a step count.
#[derive(Debug, Clone, Serialize)]
pub struct SweepPoint {
    pub sampler: SamplerKind,
    pub steps: usize,
    pub both_accuracy: f64,
    pub colour_accuracy: f64,
    pub shape_accuracy: f64,
    pub seconds: f64,
}

/// Accuracy against step count for each sampler (same seed and guidance throughout).
pub fn sweep(
    model: &LoadedModel,
    samplers: &[SamplerKind],
    steps: &[usize],
    base: &EvalOptions,
    progress: &dyn Progress,
) -> Result<Vec<SweepPoint>> {
    let mut out = Vec::new();
    for &kind in samplers {
        for &n in steps {
            let opts = EvalOptions {
                sampler: kind,
                steps: n,
                ..*base
            };
            let r = evaluate(model, &opts, progress)?;
            out.push(SweepPoint {
                sampler: kind,
                steps: n,
                both_accuracy: r.both_accuracy,
                colour_accuracy: r.colour_accuracy,
                shape_accuracy: r.shape_accuracy,
                seconds: r.seconds,
            });
        }
    }
    Ok(out)
}

/// Plots both-correct accuracy against steps (log axis of step counts as plain numbers).
pub fn save_sweep_plot(points: &[SweepPoint], path: &std::path::Path) -> Result<()> {
    use crate::render::plot::{Panel, Series};
    let mut kinds: Vec<SamplerKind> = points.iter().map(|p| p.sampler).collect();
    kinds.dedup();
    let series = kinds
        .iter()
        .map(|k| Series {
            name: k.to_string(),
            points: points
                .iter()
                .filter(|p| p.sampler == *k)
                .map(|p| ((p.steps as f64).log10(), 100.0 * p.both_accuracy))
                .collect(),
        })
        .collect();
    let panel = Panel {
        title: "judge accuracy (colour and shape correct) against sampling steps".into(),
        x_label: "sampling steps (log scale)".into(),
        y_label: "both correct, %".into(),
        series,
        log_x: true,
    };
    render::save_png(&crate::render::plot::render(&[panel], 900, 480)?, path)
}
