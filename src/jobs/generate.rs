//! `diffuse generate`: reverse diffusion from seeded noise to images for a prompt, written
//! as frames (x_t row and x0-prediction row), a GIF, a labelled strip, the samples, a grid,
//! `run.json` and optionally the trajectory. Sampling keeps its frames in memory; encoding
//! happens afterwards, in parallel, so the math never waits for the disk.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use candle_core::{DType, Device, Tensor};
use image::RgbImage;
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::checkpoint::LoadedModel;
use crate::error::{Error, Result};
use crate::frames;
use crate::fsutil;
use crate::pipeline::{self, Guided};
use crate::progress::Progress;
use crate::prompt;
use crate::rng;
use crate::sampler::{self, SamplerConfig};
use crate::schedule::NoiseSchedule;
use crate::unet::cond_tensor;

/// The defaults of `diffuse generate` (and of `diffuse eval`, which measures them): the
/// settings that scored best with `diffuse eval` for the shipped model (see its model card).
pub const DEFAULT_SAMPLER: sampler::SamplerKind = sampler::SamplerKind::Ddpm;
pub const DEFAULT_STEPS: usize = 20;
pub const DEFAULT_GUIDANCE: f64 = 3.0;

/// How many of the sampling states become frames.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameCount {
    /// The initial noise and every step.
    All,
    /// About this many, evenly chosen, first and last included.
    Some(usize),
}

/// Everything `diffuse generate` needs.
pub struct GenerateOptions {
    pub prompt: String,
    pub negative_prompt: Option<String>,
    pub num_images: usize,
    pub sampler: SamplerConfig,
    pub guidance: f64,
    pub seed: u64,
    pub out: PathBuf,
    pub frames: FrameCount,
    pub x0_row: bool,
    /// Nearest-neighbour upscaling of frames and the grid; None picks one so a frame is at
    /// least 256 px wide.
    pub scale: Option<u32>,
    pub fps: f64,
    pub save_tensors: bool,
    pub force: bool,
    /// img2img: the input picture `[3, H, W]` at the model's size, and the strength in [0, 1].
    pub init_image: Option<(Tensor, f64)>,
}

/// What was done, written as `run.json`.
#[derive(Debug, Clone, Serialize)]
pub struct GenerateReport {
    pub command: &'static str,
    pub diffuse_version: &'static str,
    pub prompt: String,
    pub negative_prompt: Option<String>,
    pub condition_ids: Vec<u32>,
    pub num_images: usize,
    pub sampler: SamplerConfig,
    /// The timesteps actually run (img2img skips the first ones).
    pub timesteps: Vec<usize>,
    /// img2img strength.
    pub strength: Option<f64>,
    pub guidance: f64,
    pub seed: u64,
    pub model: String,
    pub model_sha256: String,
    pub model_trained_steps: u64,
    pub frame_count: usize,
    pub scale: u32,
    pub out: PathBuf,
    pub files: Vec<String>,
    pub device: String,
    pub threads: usize,
    pub sampling_ms: f64,
    pub writing_ms: f64,
    pub total_ms: f64,
}

/// The SHA-256 of a model's bytes, hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// One frame: the K images of a state side by side, and under them their x0 predictions.
fn frame_image(x: &Tensor, x0: Option<&Tensor>, scale: u32, x0_row: bool) -> Result<RgbImage> {
    let k = x.dim(0)?;
    let mut tiles = Vec::with_capacity(2 * k);
    for i in 0..k {
        tiles.push(frames::to_rgb8(&x.get(i)?)?);
    }
    if x0_row {
        for i in 0..k {
            tiles.push(match x0 {
                Some(x0) => frames::to_rgb8(&x0.get(i)?)?,
                // Before the first step there is no prediction yet: mid grey.
                None => {
                    RgbImage::from_pixel(tiles[0].width(), tiles[0].height(), image::Rgb([128; 3]))
                }
            });
        }
    }
    let refs: Vec<&RgbImage> = tiles.iter().collect();
    let grid = frames::grid(&refs, k, 1, None);
    Ok(upscale(&grid, scale))
}

fn upscale(img: &RgbImage, scale: u32) -> RgbImage {
    if scale <= 1 {
        return img.clone();
    }
    image::imageops::resize(
        img,
        img.width() * scale,
        img.height() * scale,
        image::imageops::FilterType::Nearest,
    )
}

/// Runs `diffuse generate`.
pub fn run(
    model: &LoadedModel,
    model_name: &str,
    model_bytes: &[u8],
    opts: &GenerateOptions,
    device: &Device,
    progress: &dyn Progress,
) -> Result<GenerateReport> {
    let began = Instant::now();
    let vocab = &model.meta.unet.vocab;
    let ids = prompt::parse(&opts.prompt, vocab)?;
    let neg = match &opts.negative_prompt {
        Some(p) => prompt::parse(p, vocab)?,
        None => vocab.null_ids(),
    };
    if opts.num_images == 0 || opts.num_images > 64 {
        return Err(Error::invalid(format!(
            "--num-images {} is out of range 1..=64",
            opts.num_images
        )));
    }
    if !(opts.guidance.is_finite() && opts.guidance >= 0.0) {
        return Err(Error::invalid(format!(
            "--guidance {} must be a number ≥ 0",
            opts.guidance
        )));
    }
    if opts.frames == FrameCount::Some(0) {
        return Err(Error::invalid("--frames 0: at least one frame is needed"));
    }
    if matches!(opts.scale, Some(0)) {
        return Err(Error::invalid("--scale 0: must be at least 1"));
    }
    if let Some((_, strength)) = &opts.init_image {
        if !(0.0..=1.0).contains(strength) {
            return Err(Error::invalid(format!(
                "--strength {strength} is outside [0, 1]"
            )));
        }
    }
    let schedule = NoiseSchedule::new(model.meta.schedule)?;
    let config = SamplerConfig {
        prediction: model.meta.unet.prediction,
        ..opts.sampler
    };
    let mut sampler = sampler::build(&config, &schedule)?;
    fsutil::prepare_output_dir(&opts.out, opts.force)?;

    let k = opts.num_images;
    let guided = Guided {
        model: &model.unet,
        scale: opts.guidance,
        cond: cond_tensor(&vec![ids.clone(); k], device)?,
        uncond: cond_tensor(&vec![neg; k], device)?,
    };
    let timesteps = sampler.timesteps().to_vec();
    let n = timesteps.len();
    // img2img starts part-way: state 0 is the input, state 1 the input noised to the start
    // step; plain generation starts from pure noise (state 0).
    let start = opts
        .init_image
        .as_ref()
        .map_or(0, |(_, s)| pipeline::img2img_start(n, *s));
    let offset = usize::from(opts.init_image.is_some()); // the extra input state
    let total_states = n - start + 1 + offset;
    let keep: Vec<usize> = match opts.frames {
        FrameCount::All => (0..total_states).collect(),
        FrameCount::Some(m) => frames::evenly_chosen(total_states, m),
    };
    let states: std::cell::RefCell<Vec<(Tensor, Option<Tensor>)>> = Default::default();
    let mut trajectory: Vec<(Tensor, Tensor)> = Vec::new();
    let mut rng = rng::rng(opts.seed);
    progress.stage("denoising", (n - start) as u64);
    let t0 = Instant::now();
    let record = |state: usize, x: &Tensor, x0: Option<&Tensor>| {
        if keep.contains(&state) {
            states.borrow_mut().push((x.clone(), x0.cloned()));
        }
    };
    let mut on_step = |e: pipeline::StepEvent| {
        record(e.i + 1 - start + offset, e.x, Some(e.x0));
        if opts.save_tensors {
            trajectory.push((e.x.clone(), e.x0.clone()));
        }
        progress.advance(1);
    };
    let x = match &opts.init_image {
        None => pipeline::sample_observed(
            &guided,
            sampler.as_mut(),
            &mut rng,
            |x| record(0, x, None),
            &mut on_step,
        )?,
        Some((image, _)) => {
            let x_in = image.unsqueeze(0)?.repeat((k, 1, 1, 1))?; // [K, 3, H, W]
            record(0, &x_in, Some(&x_in));
            let noise = rng::randn(&mut rng, x_in.shape().clone(), device)?;
            let x_start = if start < n {
                schedule.q_sample(&x_in, &vec![timesteps[start]; k], &noise)?
            } else {
                x_in.clone()
            };
            record(1, &x_start, None);
            pipeline::denoise_from(
                &guided,
                sampler.as_mut(),
                &mut rng,
                start,
                x_start,
                &mut on_step,
            )?
        }
    };
    progress.finish();
    let sampling_ms = t0.elapsed().as_secs_f64() * 1e3;

    let t0 = Instant::now();
    let tile_w = model.meta.unet.image_size as u32 + 1;
    let scale = opts
        .scale
        .unwrap_or_else(|| (256 / (k as u32 * tile_w + 1)).max(1) + 1);
    let states = states.into_inner();
    let frame_images = {
        use rayon::prelude::*;
        states
            .par_iter()
            .map(|(x, x0)| frame_image(x, x0.as_ref(), scale, opts.x0_row))
            .collect::<Result<Vec<_>>>()?
    };
    progress.stage("writing frames", frame_images.len() as u64);
    let written = frames::write_frames(&frame_images, &opts.out.join("frames"), &|| {
        progress.advance(1)
    })?;
    progress.finish();
    fsutil::write_atomic(
        &opts.out.join("denoising.gif"),
        &frames::gif_bytes(&frame_images, opts.fps)?,
    )?;
    // Each state's label: "input", "noise" (pure noise), or the timestep it is at: the start
    // of img2img, then the timestep each step began from.
    let label_of = |state: usize| -> String {
        if opts.init_image.is_some() && state == 0 {
            "input".into()
        } else if state == offset {
            match &opts.init_image {
                Some(_) if start < n => format!("t={}", timesteps[start]),
                Some(_) => "input".into(),
                None => "noise".into(),
            }
        } else {
            format!("t={}", timesteps[state - offset - 1 + start])
        }
    };
    let labels: Vec<String> = keep.iter().map(|&s| label_of(s)).collect();
    let picks = frames::evenly_chosen(frame_images.len(), 8);
    let strip_imgs: Vec<&RgbImage> = picks.iter().map(|&i| &frame_images[i]).collect();
    let strip_labels: Vec<String> = picks.iter().map(|&i| labels[i].clone()).collect();
    frames::save_png(
        &frames::grid(&strip_imgs, strip_imgs.len(), 2, Some(&strip_labels)),
        &opts.out.join("strip.png"),
    )?;
    let mut files = frames::frame_file_names(&written);
    files.extend(["denoising.gif".into(), "strip.png".into()]);
    let mut finals = Vec::with_capacity(k);
    for i in 0..k {
        let img = frames::to_rgb8(&x.get(i)?)?;
        let name = format!("sample_{i:02}.png");
        frames::save_png(&img, &opts.out.join(&name))?;
        files.push(name);
        finals.push(img);
    }
    let refs: Vec<&RgbImage> = finals.iter().collect();
    frames::save_png(
        &upscale(&frames::grid(&refs, k.min(8), 1, None), scale),
        &opts.out.join("grid.png"),
    )?;
    files.push("grid.png".into());
    if opts.save_tensors && !trajectory.is_empty() {
        save_trajectory(
            &trajectory,
            &timesteps,
            &opts.out.join("trajectory.safetensors"),
        )?;
        files.push("trajectory.safetensors".into());
    }
    files.push("run.json".into());
    let writing_ms = t0.elapsed().as_secs_f64() * 1e3;
    let report = GenerateReport {
        command: "generate",
        diffuse_version: env!("CARGO_PKG_VERSION"),
        prompt: opts.prompt.clone(),
        negative_prompt: opts.negative_prompt.clone(),
        condition_ids: ids,
        num_images: k,
        sampler: config,
        timesteps: timesteps[start..].to_vec(),
        strength: opts.init_image.as_ref().map(|(_, s)| *s),
        guidance: opts.guidance,
        seed: opts.seed,
        model: model_name.to_string(),
        model_sha256: sha256_hex(model_bytes),
        model_trained_steps: model.meta.trained_steps,
        frame_count: frame_images.len(),
        scale,
        out: opts.out.clone(),
        files,
        device: crate::device::device_name(device),
        threads: rayon::current_num_threads(),
        sampling_ms,
        writing_ms,
        total_ms: began.elapsed().as_secs_f64() * 1e3,
    };
    let json = serde_json::to_vec_pretty(&report).expect("report serialises");
    fsutil::write_atomic(&opts.out.join("run.json"), &json)?;
    Ok(report)
}

/// `x_t` [N, K, 3, H, W] (after each step), `x0_pred` [N, K, 3, H, W], `timesteps` [N] (i64).
fn save_trajectory(traj: &[(Tensor, Tensor)], timesteps: &[usize], path: &Path) -> Result<()> {
    let xs: Vec<&Tensor> = traj.iter().map(|(x, _)| x).collect();
    let x0s: Vec<&Tensor> = traj.iter().map(|(_, x0)| x0).collect();
    let ts: Vec<i64> = timesteps.iter().map(|&t| t as i64).collect();
    let n = ts.len();
    let device = xs[0].device().clone();
    let tensors = HashMap::from([
        (
            "x_t".to_string(),
            Tensor::stack(&xs, 0)?.to_dtype(DType::F32)?,
        ),
        (
            "x0_pred".to_string(),
            Tensor::stack(&x0s, 0)?.to_dtype(DType::F32)?,
        ),
        ("timesteps".to_string(), Tensor::from_vec(ts, n, &device)?),
    ]);
    fsutil::save_tensors(path, &tensors)
}
