//! `diffuse interpolate`: a walk between two seeds and/or two prompts. Frame i of N is a
//! full sample at weight w = i/(N−1): its starting noise (and, for stochastic samplers, every
//! step's noise) is the slerp of the two seeds' noises, its prompt the linear blend of the
//! two encoded prompts. The ends equal `diffuse generate --num-images 1` with each seed and
//! prompt. Each sample is written as it is made (`sample_000.png …`, and upscaled as a frame),
//! with a GIF and a strip.

use std::path::{Path, PathBuf};
use std::time::Instant;

use candle_core::Tensor;
use serde::Serialize;

use crate::edit::interpolate::{slerp, weights};
use crate::error::{Error, Result};
use crate::io::fs;
use crate::jobs::{ms, write_run_json};
use crate::model::LoadedModel;
use crate::pipeline::{self, Guided};
use crate::progress::Progress;
use crate::prompt;
use crate::render::frame::{default_scale, labelled_frame, Row, Tiles};
use crate::render::index::{write_index, Picture};
use crate::render::{self, animation::AnimationWriter};
use crate::rng;
use crate::sampler::{SamplerConfig, SamplerKind};
use crate::unet::Condition;

/// Frames by default.
pub const DEFAULT_FRAMES: usize = 16;
/// The most frames (each one is a whole sampling run).
pub const MAX_FRAMES: usize = 256;
/// The sampler by default: deterministic DDIM, so neighbouring frames differ only by w.
pub const DEFAULT_SAMPLER: SamplerKind = SamplerKind::Ddim;

/// Everything `diffuse interpolate` needs.
pub struct InterpolateOptions {
    pub prompt: String,
    /// The prompt at the far end (default: the same prompt).
    pub prompt_to: Option<String>,
    pub seed: u64,
    pub seed_to: u64,
    pub frames: usize,
    pub sampler: SamplerConfig,
    pub guidance: f64,
    pub out: PathBuf,
    pub scale: Option<u32>,
    pub fps: f64,
    pub force: bool,
}

/// What was done, written as `run.json`.
#[derive(Debug, Clone, Serialize)]
pub struct InterpolateReport {
    pub command: &'static str,
    pub diffuse_version: &'static str,
    pub prompt: String,
    pub prompt_to: String,
    pub seed: u64,
    pub seed_to: u64,
    /// The weight of the far end in each frame.
    pub weights: Vec<f64>,
    pub sampler: SamplerConfig,
    pub guidance: f64,
    pub model: String,
    pub model_sha256: String,
    #[serde(serialize_with = "crate::jobs::lossy::path")]
    pub out: PathBuf,
    pub files: Vec<String>,
    pub sampling_ms: f64,
    pub total_ms: f64,
}

fn check(opts: &InterpolateOptions) -> Result<()> {
    if opts.frames < 2 || opts.frames > MAX_FRAMES {
        return Err(Error::option(
            "frames",
            opts.frames,
            format!(
                "an interpolation has 2..={MAX_FRAMES} frames (the two ends and the steps between)"
            ),
        ));
    }
    let prompt_to = opts.prompt_to.as_ref().unwrap_or(&opts.prompt);
    if opts.seed == opts.seed_to && *prompt_to == opts.prompt {
        return Err(Error::option(
            "seed-to",
            opts.seed_to,
            "is the same as --seed and the prompts are the same: every frame would be one picture; give another --seed-to or a --prompt-to",
        ));
    }
    crate::defaults::check_guidance("guidance", opts.guidance)?;
    crate::render::frame::check_scale(opts.scale)?;
    Ok(())
}

/// Whether `name` is a file `interpolate` writes, so `--force` may remove it.
fn is_interpolate_output(name: &str) -> bool {
    let sample = name.starts_with("sample_") && name.ends_with(".png");
    sample || ["interpolation.gif", "strip.png", "run.json", "index.html"].contains(&name)
}

/// The encoded prompt (batch 1) and the unconditional prompt, as `generate` encodes them.
fn conditions(model: &LoadedModel, text: &str, guidance: f64) -> Result<(Condition, Condition)> {
    let unet = &model.meta.unet;
    let ids = prompt::encode(text, unet)?;
    model
        .guided(guidance, &[ids], &[prompt::null_ids(unet)])?
        .conditions()
}

/// The sample at weight `w`: from the slerp of the two seeds' noises (every step's too, for a
/// stochastic sampler) under the blend of the two encoded prompts.
fn sample_at(
    model: &LoadedModel,
    opts: &InterpolateOptions,
    config: &SamplerConfig,
    (cond_a, cond_b, uncond): (&Condition, &Condition, &Condition),
    w: f64,
) -> Result<Tensor> {
    let u = &model.meta.unet;
    let shape = (1, u.in_channels, u.image_size, u.image_size);
    let (mut rng_a, mut rng_b) = (rng::rng(opts.seed), rng::rng(opts.seed_to));
    let mut draw = || -> Result<Tensor> {
        let a = rng::randn(&mut rng_a, shape, model.device())?;
        slerp(&a, &rng::randn(&mut rng_b, shape, model.device())?, w)
    };
    let noise = draw()?; // [1, C, H, W]
    let cond = cond_a.lerp(cond_b, w)?;
    let guided = Guided::from_conditions(model.net.denoiser(), opts.guidance, cond, uncond)?;
    let mut sampler = model.sampler(*config)?;
    let predict = |x: &Tensor, t| guided.predict(x, t);
    let x = pipeline::denoise_drawing(predict, sampler.as_mut(), &mut draw, 0, noise, |_| {})?;
    model.decode(&x) // [1, 3, S, S]
}

/// Runs `diffuse interpolate` on the model's device.
/// One frame of the walk: the sample `x` `[1, 3, S, S]` under `title`, at weight `w`.
fn push_frame(
    frames: &mut AnimationWriter,
    title: &str,
    x: &Tensor,
    w: f64,
    scale: u32,
) -> Result<()> {
    let rows = [Row {
        name: "the sample",
        tiles: Tiles::Images(x),
    }];
    let frame = labelled_frame(title, &rows, (1, x.dim(2)?, scale), None)?;
    frames.push(frame, || format!("w={w:.2}"))
}

/// The output folder's index.html.
fn write_page(out: &Path, report: &InterpolateReport) -> Result<()> {
    let pictures = [
        Picture { file: "strip.png", caption: "eight frames of the walk, each a whole sample; the label is the weight of the far end" },
        Picture { file: "interpolation.gif", caption: "every frame of the walk as an animation" },
        Picture { file: "sample_000.png", caption: "the first end: a plain sample with --seed and --prompt" },
    ];
    let intro = "Each frame starts from the spherical interpolation of the two seeds' noises, under a linear blend of the two encoded prompts, and is denoised in full.";
    let prompts = match report.prompt_to == report.prompt {
        true => report.prompt.clone(),
        false => format!("{}\" to \"{}", report.prompt, report.prompt_to),
    };
    let title = crate::render::index::title_with_prompt("interpolate", &prompts);
    write_index(out, &title, intro, &pictures, report)?;
    Ok(())
}

pub fn run(
    model: &LoadedModel,
    opts: &InterpolateOptions,
    progress: &dyn Progress,
) -> Result<InterpolateReport> {
    let began = Instant::now();
    check(opts)?;
    let config = model.with_prediction(opts.sampler);
    model.sampler(config)?; // checks the steps and η
    let prompt_to = opts
        .prompt_to
        .clone()
        .unwrap_or_else(|| opts.prompt.clone());
    let (cond_a, uncond) = conditions(model, &opts.prompt, opts.guidance)?;
    let (cond_b, _) = conditions(model, &prompt_to, opts.guidance)?;
    let _lock = fs::prepare_output_dir(&opts.out, opts.force)?;
    if opts.force {
        fs::remove_owned(&opts.out, is_interpolate_output)?;
    }
    let side = model.picture_size() as u32;
    let scale = opts.scale.unwrap_or_else(|| default_scale(side as usize));
    let mut frames = AnimationWriter::new(
        &opts.out,
        "interpolation.gif",
        opts.frames,
        opts.fps,
        opts.force,
    )?;
    let ws = weights(opts.frames);
    progress.stage("interpolating", opts.frames as u64);
    let t0 = Instant::now();
    let mut busy = 0.0;
    let mut files = Vec::new();
    for (i, &w) in ws.iter().enumerate() {
        let x = sample_at(model, opts, &config, (&cond_a, &cond_b, &uncond), w)?;
        let written = Instant::now();
        let sample = render::to_rgb8(&x.get(0)?)?;
        let name = format!("sample_{i:03}.png");
        render::save_png(&sample, &opts.out.join(&name))?;
        files.push(name);
        let title = format!(
            "frame {}/{}: weight {w:.2} on the far end (seed {}, \"{}\")",
            i + 1,
            ws.len(),
            opts.seed_to,
            prompt_to
        );
        push_frame(&mut frames, &title, &x, w, scale)?;
        busy += ms(written);
        progress.advance(1);
    }
    progress.finish();
    let sampling_ms = ms(t0) - busy;
    progress.stage("writing GIF, strip", 0);
    files.extend(frames.finish()?.files);
    progress.finish();
    files.extend(["run.json", "index.html"].map(String::from));
    let report = InterpolateReport {
        command: "interpolate",
        diffuse_version: env!("CARGO_PKG_VERSION"),
        prompt: opts.prompt.clone(),
        prompt_to,
        seed: opts.seed,
        seed_to: opts.seed_to,
        weights: ws,
        sampler: config,
        guidance: opts.guidance,
        model: model.name.clone(),
        model_sha256: model.sha256.clone(),
        out: opts.out.clone(),
        files,
        sampling_ms,
        total_ms: ms(began),
    };
    write_run_json(&opts.out, &report)?;
    write_page(&opts.out, &report)?;
    Ok(report)
}
