//! `diffuse generate` (and `img2img`): reverse diffusion from seeded noise, or from a noised
//! picture, to images for a prompt, written as frames (x_t row and x0-prediction row), a GIF,
//! a labelled strip, the samples, a grid, `run.json`, and optionally the trajectory and the
//! cross-attention maps per word. Frames stream to disk during sampling. [`plan`] checks the
//! options; [`record`] runs the loop and records it.

mod inpaint;
mod plan;
mod record;

pub use inpaint::InpaintSpec;

use std::path::PathBuf;
use std::time::Instant;

use candle_core::Tensor;
use serde::Serialize;

use crate::error::Result;
use crate::io::{fs, safetensors};
use crate::jobs::{ms, write_run_json};
use crate::model::LoadedModel;
use crate::progress::Progress;
use crate::prompt;
use crate::render;
use crate::render::animation::{AnimationWriter, FrameCount};
use crate::render::index::{write_index, Picture};
use crate::run::Run;
use crate::sampler::SamplerConfig;

use plan::Plan;
use record::Recording;

/// The largest `--scale`.
pub use crate::render::frame::MAX_SCALE;

/// The output folder by default: `out/<prompt slug>-seed<seed>`.
pub fn default_out(prompt: &str, seed: u64) -> PathBuf {
    PathBuf::from("out").join(format!("{}-seed{seed}", prompt::slug(prompt)))
}

/// The default output folder of `generate --from-noise FILE`: `out/<prompt>-<file stem>`.
pub fn default_out_from_noise(prompt: &str, noise: &std::path::Path) -> PathBuf {
    let stem = noise.file_stem().map(|s| s.to_string_lossy().into_owned());
    let stem = prompt::slug(stem.as_deref().unwrap_or("noise"));
    PathBuf::from("out").join(format!("{}-{stem}", prompt::slug(prompt)))
}

/// img2img's starting picture (resized to the model's resolution) and strength in [0, 1].
#[derive(Debug, Clone)]
pub struct InitImage {
    pub path: PathBuf,
    pub strength: f64,
}

/// Everything `diffuse generate` needs.
pub struct GenerateOptions {
    pub prompt: String,
    pub negative_prompt: Option<String>,
    pub num_images: usize,
    /// The sampler; its prediction type is replaced by the model's.
    pub sampler: SamplerConfig,
    pub guidance: f64,
    pub seed: u64,
    pub out: PathBuf,
    pub frames: FrameCount,
    pub x0_row: bool,
    /// Also show the model's predicted noise ε̂ as a row.
    pub show_noise: bool,
    /// Nearest-neighbour upscaling of frames and the grid; None picks one so each image is
    /// at least `SamplingDefaults::display_side` px wide.
    pub scale: Option<u32>,
    pub fps: f64,
    pub save_tensors: bool,
    pub force: bool,
    /// img2img: start from this picture instead of pure noise.
    pub init_image: Option<InitImage>,
    /// Cross-attention maps of every prompt word at about this many steps (text models).
    pub attention_maps: Option<usize>,
    /// inpaint: repaint part of a picture instead of generating from noise.
    pub inpaint: Option<InpaintSpec>,
    /// Start from this noise file (e.g. from `diffuse invert`) instead of seeded noise.
    pub from_noise: Option<PathBuf>,
    /// Start at this sampler step (generate: the starting state is taken to be at its
    /// timestep; img2img: instead of the strength).
    pub start_step: Option<usize>,
    /// "Is it new?": each sample's this many nearest training scenes (`nearest.png` and
    /// run.json).
    pub nearest: Option<usize>,
}

/// What was done, written as `run.json`.
#[derive(Debug, Clone, Serialize)]
pub struct GenerateReport {
    /// "generate", "img2img" or "inpaint".
    pub command: &'static str,
    pub diffuse_version: &'static str,
    /// The prompt as typed, and as the model reads it (lower case, no punctuation).
    pub prompt: String,
    pub prompt_normalized: String,
    pub negative_prompt: Option<String>,
    pub condition_ids: Vec<u32>,
    pub num_images: usize,
    pub sampler: SamplerConfig,
    /// The timesteps actually run (img2img skips the first ones).
    pub timesteps: Vec<usize>,
    /// img2img strength.
    pub strength: Option<f64>,
    /// img2img: the input picture.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[serde(serialize_with = "crate::jobs::lossy::opt_path")]
    pub image: Option<PathBuf>,
    /// inpaint: the picture, the mask, the method and the share of pixels repainted.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub inpaint: Option<InpaintSpec>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub repainted_share: Option<f64>,
    /// generate --from-noise: the starting state's file.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[serde(serialize_with = "crate::jobs::lossy::opt_path")]
    pub from_noise: Option<PathBuf>,
    /// The sampler step the run started at.
    pub start_step: usize,
    pub guidance: f64,
    pub seed: u64,
    /// False when nothing is drawn from the seed: `--from-noise` with a deterministic sampler.
    pub seed_used: bool,
    pub model: String,
    pub model_sha256: String,
    pub model_trained_steps: u64,
    pub frame_count: usize,
    /// Each frame's label on the strip: "noise", "input", the t of its picture, "sample".
    pub frame_labels: Vec<String>,
    pub scale: u32,
    /// --nearest: per sample, its nearest training scenes (index, step, distance, caption).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nearest: Option<Vec<Vec<crate::nearest::Neighbour>>>,
    #[serde(serialize_with = "crate::jobs::lossy::path")]
    pub out: PathBuf,
    pub files: Vec<String>,
    pub device: String,
    pub threads: usize,
    pub sampling_ms: f64,
    pub writing_ms: f64,
    pub total_ms: f64,
}

/// What `index.html` says of the run.
const INTRO: &str = "Reverse diffusion: the model starts from noise and removes a little of the noise it predicts at every step. Each frame shows the noisy image x_t and, under it, the model's current guess x0 of the final image.";

/// The pictures on `index.html`.
const PICTURES: [Picture; 5] = [
    Picture {
        file: "strip.png",
        caption: "eight frames of the run, left to right: x_t on top, the x0 guess underneath",
    },
    Picture {
        file: "denoising.gif",
        caption: "every kept step as an animation; it holds on the final image",
    },
    Picture {
        file: "grid.png",
        caption: "the final samples",
    },
    Picture {
        file: "attention/grid.png",
        caption: "where each prompt word looks (cross-attention, text models)",
    },
    Picture {
        file: "nearest.png",
        caption: "Is it new? A row per sample: the sample, then its nearest training scenes with their captions and distances (RMS in [0, 1]) over every scene the model was trained on",
    },
];

/// Whether `name` is a file (or folder) `generate` writes, so `--force` may remove it.
fn is_generate_output(name: &str) -> bool {
    let sample = name.starts_with("sample_") && name.ends_with(".png");
    let fixed = [
        "denoising.gif",
        "strip.png",
        "grid.png",
        "run.json",
        "index.html",
        "trajectory.safetensors",
        "attention",
        "nearest.png",
    ];
    sample || fixed.contains(&name)
}

/// Writes the attention maps and the trajectory when they were recorded; returns their names.
fn save_extras(
    x: &Tensor,
    opts: &GenerateOptions,
    plan: &Plan,
    maps: &[render::attention::StepMaps],
    trajectory: Vec<(Tensor, Tensor)>,
) -> Result<Vec<String>> {
    let mut files = Vec::new();
    if !maps.is_empty() {
        let words = crate::text::tokenizer::words(&opts.prompt);
        let base = render::to_rgb8(&x.get(0)?)?;
        let scale = (render::attention::MAP_SIDE / base.width()).max(1);
        let written =
            render::attention::save_word_maps(&opts.out, &words, maps, &base, scale, 2.0)?;
        files.extend(written);
    }
    if opts.save_tensors && !trajectory.is_empty() {
        let (xs, x0s): (Vec<Tensor>, Vec<Tensor>) = trajectory.into_iter().unzip();
        let tensors = vec![
            ("x_t", Tensor::stack(&xs, 0)?),      // [N, K, 3, H, W]
            ("x0_pred", Tensor::stack(&x0s, 0)?), // [N, K, 3, H, W]
        ];
        let path = opts.out.join("trajectory.safetensors");
        safetensors::save_trajectory(&path, tensors, &plan.timesteps[plan.start..])?;
        files.push("trajectory.safetensors".into());
    }
    Ok(files)
}

/// Runs `diffuse generate` on the model's device.
pub fn run(
    model: &LoadedModel,
    opts: &GenerateOptions,
    progress: &dyn Progress,
) -> Result<GenerateReport> {
    let began = Instant::now();
    let plan = Plan::new(model, opts)?;
    for note in &plan.notes {
        progress.note(note);
    }
    if let Some(k) = opts.nearest {
        crate::jobs::nearest::check_top(k)?;
        crate::jobs::nearest::stream_of(model)?; // before any work: the model must record one
    }
    let k = opts.num_images;
    let start = plan.start_state(k)?;
    let run = Run::new(model, &plan.request(opts), &start)?;
    let _lock = fs::prepare_output_dir(&opts.out, opts.force)?;
    if opts.force {
        fs::remove_owned(&opts.out, is_generate_output)?;
    }
    let frames = AnimationWriter::new(
        &opts.out,
        "denoising.gif",
        plan.keep.len(),
        opts.fps,
        opts.force,
    )?;
    let mut rec = Recording {
        frames,
        trajectory: Vec::new(),
        maps: Vec::new(),
    };
    progress.stage("denoising", (plan.timesteps.len() - plan.start) as u64);
    let t0 = Instant::now();
    let x = record::sample(&plan, run, opts, &mut rec, progress)?;
    progress.finish();
    let Recording {
        frames,
        trajectory,
        maps,
    } = rec;
    let sampling_ms = ms(t0) - frames.busy_ms();

    let t0 = Instant::now();
    let frames_before = frames.busy_ms();
    progress.stage("writing GIF, strip", 0);
    let animation = frames.finish()?;
    let mut files = animation.files;
    files.extend(render::save_samples(&x, &opts.out, plan.scale)?);
    files.extend(save_extras(&x, opts, &plan, &maps, trajectory)?);
    progress.finish();
    let nearest = match opts.nearest {
        Some(k) => {
            let path = opts.out.join("nearest.png");
            let found = crate::jobs::nearest::panel(model, &x, k, &path, progress)?;
            files.push("nearest.png".into());
            Some(found)
        }
        None => None,
    };
    files.extend(["run.json", "index.html"].map(String::from));
    let times = (sampling_ms, frames_before + ms(t0), ms(began));
    let mut report = report(model, opts, &plan, files, times);
    report.nearest = nearest;
    write_run_json(&opts.out, &report)?;
    let title = crate::render::index::title_with_prompt(report.command, &report.prompt);
    write_index(&opts.out, &title, INTRO, &PICTURES, &report)?;
    Ok(report)
}

/// What was done, for run.json; `times` are (sampling, writing, total) in ms.
fn report(
    model: &LoadedModel,
    opts: &GenerateOptions,
    plan: &Plan,
    files: Vec<String>,
    (sampling_ms, writing_ms, total_ms): (f64, f64, f64),
) -> GenerateReport {
    GenerateReport {
        command: match (&opts.init_image, &opts.inpaint) {
            (Some(_), _) => "img2img",
            (None, Some(_)) => "inpaint",
            (None, None) => "generate",
        },
        diffuse_version: env!("CARGO_PKG_VERSION"),
        prompt: opts.prompt.clone(),
        prompt_normalized: crate::text::tokenizer::normalize(&opts.prompt),
        negative_prompt: opts.negative_prompt.clone(),
        condition_ids: plan.ids.clone(),
        num_images: opts.num_images,
        sampler: plan.config,
        timesteps: plan.timesteps[plan.start..].to_vec(),
        strength: plan.init.as_ref().map(|(_, s)| *s),
        image: opts.init_image.as_ref().map(|i| i.path.clone()),
        inpaint: opts.inpaint.clone(),
        repainted_share: plan.inpaint.as_ref().map(|i| i.share),
        from_noise: opts.from_noise.clone(),
        start_step: plan.start,
        guidance: opts.guidance,
        seed: opts.seed,
        seed_used: opts.from_noise.is_none() || plan.config.uses_noise(),
        model: model.name.clone(),
        model_sha256: model.sha256.clone(),
        model_trained_steps: model.meta.trained_steps,
        frame_count: plan.keep.len(),
        frame_labels: plan.keep.iter().map(|&state| plan.label(state)).collect(),
        scale: plan.scale,
        nearest: None,
        out: opts.out.clone(),
        files,
        device: crate::device::device_name(model.device()),
        threads: rayon::current_num_threads(),
        sampling_ms,
        writing_ms,
        total_ms,
    }
}
