//! `diffuse invert`: DDIM inversion of a picture to the noise that deterministic DDIM turns
//! back into it. Writes `noise.safetensors` (for `generate --from-noise`), the frames of the
//! picture becoming noise (x_t row and x0-guess row), a GIF and a strip, the resized input,
//! the reconstruction sampled back from the noise, and `run.json` with its PSNR.

use std::path::{Path, PathBuf};
use std::time::Instant;

use candle_core::Tensor;
use serde::Serialize;

use crate::edit::invert::{check_invertible, ddim_invert, psnr, timesteps};
use crate::error::{Error, Result};
use crate::io::fs;
use crate::jobs::noise_file::{save_noise, NoiseMeta};
use crate::jobs::{ms, write_run_json};
use crate::model::LoadedModel;
use crate::pipeline::{Guided, StepEvent};
use crate::progress::Progress;
use crate::prompt;
use crate::render::frame::{default_scale, labelled_frame, Row, Tiles};
use crate::render::index::{write_index, Picture};
use crate::render::{self, animation::AnimationWriter, animation::FrameCount};
use crate::run::{Run, RunRequest, Start};
use crate::sampler::{SamplerConfig, SamplerKind};

/// Inversion steps by default (the round trip's PSNR in the README is measured at 50).
pub const DEFAULT_STEPS: usize = 50;
/// Guidance while inverting and reconstructing: 1, none (guidance makes the ODE stiffer and
/// the round trip worse).
pub const DEFAULT_GUIDANCE: f64 = 1.0;

/// The sampler `diffuse invert` uses by default: DDIM, η = 0, with x0 neither clipped nor
/// thresholded (either would make the steps lose information and break the round trip).
pub fn default_sampler(steps: usize) -> SamplerConfig {
    SamplerConfig {
        clip_sample: false,
        thresholding: false,
        ..SamplerConfig::new(SamplerKind::Ddim, steps)
    }
}

/// Everything `diffuse invert` needs.
pub struct InvertOptions {
    pub image: PathBuf,
    /// The `--model` the user gave (None: the default model), repeated in the printed
    /// reconstruction command.
    pub model: Option<PathBuf>,
    pub prompt: String,
    pub sampler: SamplerConfig,
    pub guidance: f64,
    /// Invert up to this sampler step (0: all the way to x_T).
    pub start_step: usize,
    pub out: PathBuf,
    pub frames: FrameCount,
    pub scale: Option<u32>,
    pub fps: f64,
    pub force: bool,
}

/// What was done, written as `run.json`.
#[derive(Debug, Clone, Serialize)]
pub struct InvertReport {
    pub command: &'static str,
    pub diffuse_version: &'static str,
    #[serde(serialize_with = "crate::jobs::lossy::path")]
    pub image: PathBuf,
    pub prompt: String,
    pub sampler: SamplerConfig,
    pub guidance: f64,
    pub start_step: usize,
    /// The timesteps inverted through, cleanest first.
    pub timesteps: Vec<usize>,
    pub model: String,
    pub model_sha256: String,
    /// Reconstruction from the noise against the (resized) input, in dB over [-1, 1].
    pub psnr_db: f64,
    /// The command that samples the picture back from the noise.
    pub reconstruct_command: String,
    #[serde(serialize_with = "crate::jobs::lossy::path")]
    pub out: PathBuf,
    pub files: Vec<String>,
    pub total_ms: f64,
}

/// Whether `name` is a file `invert` writes, so `--force` may remove it.
fn is_invert_output(name: &str) -> bool {
    let fixed = [
        "noise.safetensors",
        "input.png",
        "reconstruction.png",
        "inversion.gif",
        "strip.png",
        "run.json",
        "index.html",
    ];
    fixed.contains(&name)
}

fn check(opts: &InvertOptions) -> Result<()> {
    check_invertible(&opts.sampler)?;
    crate::defaults::check_guidance("guidance", opts.guidance)?;
    if opts.start_step >= opts.sampler.steps {
        let range = format!(
            "0..={} (--steps {})",
            opts.sampler.steps.saturating_sub(1),
            opts.sampler.steps
        );
        return Err(Error::out_of_range("start-step", opts.start_step, range));
    }
    crate::render::frame::check_scale(opts.scale)?;
    opts.frames.validate()
}

/// Inverts `x` while its states stream into `frames`; returns the noise.
fn invert_recording(
    guided: &Guided,
    model: &LoadedModel,
    config: &SamplerConfig,
    opts: &InvertOptions,
    x: &Tensor,
    mut frames: AnimationWriter,
    progress: &dyn Progress,
) -> Result<(Tensor, Vec<String>)> {
    let n = config.steps - opts.start_step;
    let keep = opts.frames.pick(n + 1);
    let side = model.picture_size();
    let scale = opts.scale.unwrap_or_else(|| default_scale(side));
    let mut record = |state: usize, x: &Tensor, x0: Option<&Tensor>, title: String| -> Result<()> {
        if !keep.contains(&state) {
            return Ok(());
        }
        let x = &model.decode(x)?; // [1, 3, S, S]
        let x0 = x0.map(|x0| model.decode(x0)).transpose()?;
        let x0 = x0.as_ref();
        let rows = [
            Row {
                name: "x_t: the picture becoming noise",
                tiles: Tiles::Images(x),
            },
            Row {
                name: "x0: the model's guess of the clean picture",
                tiles: x0.map_or(Tiles::Blank, Tiles::Images),
            },
        ];
        let frame = labelled_frame(&title, &rows, (1, side, scale), None)?;
        frames.push(frame, || title.split(':').next().unwrap_or("").to_string())
    };
    record(0, x, None, "input: the picture to invert".into())?;
    let schedule = &model.schedule;
    progress.stage("inverting", n as u64);
    let mut failed = None;
    let noise = ddim_invert(
        |x, t| guided.predict(x, t),
        schedule,
        config,
        x,
        opts.start_step,
        |e: StepEvent| {
            if failed.is_none() {
                let title = format!("t={}: inversion step {}/{}", e.t, e.i + 1, e.n);
                failed = record(e.i + 1, e.x, Some(e.x0), title).err();
            }
            progress.advance(1);
        },
    )?;
    if let Some(e) = failed {
        return Err(e);
    }
    Ok((noise, frames.finish()?.files))
}

/// Runs `diffuse invert` on the model's device.
/// The picture back from `noise` (the state at `--start-step`), by the same run `generate
/// --from-noise` takes: deterministic DDIM draws no noise.
fn reconstruct(
    model: &LoadedModel,
    opts: &InvertOptions,
    noise: &Tensor,
    progress: &dyn Progress,
) -> Result<Tensor> {
    let request = RunRequest {
        prompt: opts.prompt.clone(),
        negative_prompt: None,
        sampler: opts.sampler,
        guidance: opts.guidance,
        seed: 0,
        num_images: 1,
        axis: None,
        start_step: opts.start_step,
        attention_steps: Vec::new(),
    };
    let mut run = Run::new(model, &request, &Start::State(noise.clone()))?;
    progress.stage(
        "reconstructing",
        (opts.sampler.steps - opts.start_step) as u64,
    );
    while run.step()?.is_some() {
        progress.advance(1);
    }
    progress.finish();
    Ok(run.finish()?.remove(0))
}

/// The output folder's index.html.
fn write_page(out: &Path, report: &InvertReport) -> Result<()> {
    let pictures = [
        Picture { file: "strip.png", caption: "the picture becoming noise: x_t on top, the model's guess of the clean picture underneath" },
        Picture { file: "inversion.gif", caption: "every inversion step as an animation" },
        Picture { file: "input.png", caption: "the picture at the model's resolution" },
        Picture { file: "reconstruction.png", caption: "deterministic DDIM run forward again from the noise found: the round trip" },
    ];
    let intro = "DDIM inversion runs the deterministic sampler backwards, from a picture to the noise that the sampler turns back into it. noise.safetensors holds that noise; run.json gives the round trip's PSNR and the generate command that reproduces the reconstruction.";
    let title = crate::render::index::title_with_prompt("invert", &report.prompt);
    write_index(out, &title, intro, &pictures, report)?;
    Ok(())
}

pub fn run(
    model: &LoadedModel,
    opts: &InvertOptions,
    progress: &dyn Progress,
) -> Result<InvertReport> {
    let began = Instant::now();
    let config = model.with_prediction(opts.sampler);
    model.sampler(config)?; // checks --steps against the model's schedule
    check(opts)?;
    let unet = &model.meta.unet;
    let ids = prompt::encode(&opts.prompt, unet)?;
    let loaded = model.load_picture(&opts.image)?;
    if let Some(note) = loaded.crop_note(&opts.image) {
        progress.note(&note);
    }
    let x = loaded.x0.unsqueeze(0)?; // [1, 3, S, S]
    let grid = timesteps(&model.schedule, &config);
    let guided = model.guided(opts.guidance, &[ids], &[prompt::null_ids(unet)])?;
    let _lock = fs::prepare_output_dir(&opts.out, opts.force)?;
    if opts.force {
        fs::remove_owned(&opts.out, is_invert_output)?;
    }
    let total = opts.frames.pick(config.steps - opts.start_step + 1).len();
    let frames = AnimationWriter::new(&opts.out, "inversion.gif", total, opts.fps, opts.force)?;
    let z = model.encode(&x)?; // [1, C, h, w]: a latent model inverts the latents
    let (noise, mut files) = invert_recording(&guided, model, &config, opts, &z, frames, progress)?;
    let start = opts.start_step;
    let back = reconstruct(model, opts, &noise, progress)?; // [1, 3, S, S]
    let meta = NoiseMeta {
        prompt: opts.prompt.clone(),
        sampler: config,
        guidance: opts.guidance,
        start_step: start,
        timestep: grid[start],
        model_sha256: model.sha256.clone(),
    };
    save_noise(&opts.out.join("noise.safetensors"), &noise, &meta)?;
    render::save_png(&render::to_rgb8(&x.get(0)?)?, &opts.out.join("input.png"))?;
    let reconstruction = render::to_rgb8(&back.get(0)?)?;
    render::save_png(&reconstruction, &opts.out.join("reconstruction.png"))?;
    let written = [
        "noise.safetensors",
        "input.png",
        "reconstruction.png",
        "run.json",
    ];
    files.extend(written.map(String::from));
    files.push("index.html".into());
    let report = InvertReport {
        command: "invert",
        diffuse_version: env!("CARGO_PKG_VERSION"),
        image: opts.image.clone(),
        prompt: opts.prompt.clone(),
        sampler: config,
        guidance: opts.guidance,
        start_step: start,
        timesteps: grid[start..].iter().rev().copied().collect(),
        model: model.name.clone(),
        model_sha256: model.sha256.clone(),
        psnr_db: psnr(&back, &x)?,
        reconstruct_command: reconstruct_command(opts, &config),
        out: opts.out.clone(),
        files,
        total_ms: ms(began),
    };
    write_run_json(&opts.out, &report)?;
    write_page(&opts.out, &report)?;
    Ok(report)
}

/// The `diffuse generate` command line that samples the picture back from the noise.
fn reconstruct_command(opts: &InvertOptions, config: &SamplerConfig) -> String {
    let model = opts
        .model
        .as_ref()
        .map(|m| format!(" --model {}", m.display()))
        .unwrap_or_default();
    let mut cmd = format!(
        "diffuse generate{model} --from-noise {} --prompt {:?} --num-images 1 --sampler ddim --steps {} --guidance {} --timestep-spacing {}",
        opts.out.join("noise.safetensors").display(),
        opts.prompt,
        config.steps,
        opts.guidance,
        config.timestep_spacing,
    );
    if !config.clip_sample {
        cmd.push_str(" --no-clip-sample");
    }
    if !config.thresholding {
        cmd.push_str(" --no-thresholding");
    }
    cmd
}
