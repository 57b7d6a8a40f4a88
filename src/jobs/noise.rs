//! `diffuse noise`: forward diffusion of a chosen picture, written as frames, a GIF,
//! a labelled strip, `run.json` and optionally the raw trajectory. Frames stream to disk
//! as they are made.

use std::path::PathBuf;
use std::time::Instant;

use candle_core::{Device, Tensor};
use serde::Serialize;

use crate::error::Result;
use crate::forward::{self, FrameSpacing, NoiseMode};
use crate::io::image::{self, LoadOptions, LoadedImage};
use crate::io::{fs, safetensors};
use crate::jobs::{ms, write_run_json};
use crate::progress::Progress;
use crate::render::animation::{self, FrameCount, DISPLAY_MAX_SIDE};
use crate::render::frame::{labelled_frame, Row, Tiles};
use crate::render::index::{write_index, Picture};
use crate::rng;
use crate::schedule::{NoiseSchedule, ScheduleConfig};

/// Default number of evenly spaced frames.
pub const DEFAULT_FRAMES: usize = 50;
/// Default GIF speed (the same as generate's).
pub const DEFAULT_FPS: f64 = crate::defaults::SamplingDefaults::LIBRARY.fps;
/// Frames fade the picture evenly by default.
pub const DEFAULT_SPACING: FrameSpacing = FrameSpacing::Signal;
/// Default seed of the noise.
pub const DEFAULT_SEED: u64 = 0;

/// Which timesteps become frames.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FrameChoice {
    /// Every timestep, or about `n` over 0..=T-1 with the given spacing.
    Spaced(FrameCount, FrameSpacing),
    /// Exactly these timesteps (sorted, repeats dropped).
    List(Vec<i64>),
}

/// Everything `diffuse noise` needs.
#[derive(Debug, Clone)]
pub struct NoiseOptions {
    pub image: PathBuf,
    pub out: PathBuf,
    pub schedule: ScheduleConfig,
    pub load: LoadOptions,
    pub frames: FrameChoice,
    pub mode: NoiseMode,
    pub seed: u64,
    pub fps: f64,
    pub save_tensors: bool,
    pub force: bool,
}

/// Wall-clock time of each stage, in milliseconds.
#[derive(Debug, Clone, Serialize)]
pub struct NoiseTimings {
    pub load_ms: f64,
    pub diffuse_ms: f64,
    pub frames_ms: f64,
    pub gif_ms: f64,
    pub strip_ms: f64,
    pub tensors_ms: f64,
    pub total_ms: f64,
}

/// What was done, written as `run.json`.
#[derive(Debug, Clone, Serialize)]
pub struct NoiseReport {
    pub command: &'static str,
    pub diffuse_version: &'static str,
    #[serde(serialize_with = "crate::jobs::lossy::path")]
    pub image: PathBuf,
    #[serde(serialize_with = "crate::jobs::lossy::path")]
    pub out: PathBuf,
    pub original_size: [u32; 2],
    pub size: [u32; 2],
    pub downscaled: bool,
    pub max_side: u32,
    pub forced_size: Option<[u32; 2]>,
    /// The picture's size on the GIF and the strip (smaller than `size` above 512 px a side).
    pub shown_size: [u32; 2],
    pub beta_schedule: String,
    pub train_timesteps: usize,
    pub beta_start: f64,
    pub beta_end: f64,
    pub mode: NoiseMode,
    pub seed: u64,
    pub fps: f64,
    pub frame_count: usize,
    pub timesteps: Vec<usize>,
    pub alphas_cumprod: Vec<f64>,
    pub files: Vec<String>,
    pub device: String,
    pub threads: usize,
    pub timings: NoiseTimings,
}

/// Loads the picture, noting when it was scaled down.
fn load(opts: &NoiseOptions, device: &Device, progress: &dyn Progress) -> Result<LoadedImage> {
    let img = image::load_image(&opts.image, &opts.load, device)?;
    if img.downscaled {
        progress.note(&format!(
            "scaled {} down from {}x{} to {}x{} (longest side {}; change with --max-side or --size)",
            opts.image.display(),
            img.original_size.0,
            img.original_size.1,
            img.size.0,
            img.size.1,
            opts.load.max_side
        ));
    }
    Ok(img)
}

/// Runs `diffuse noise`. Validates every input before it writes anything.
/// The files `noise` writes besides its frames, which `--force` may remove.
const OWNED: [&str; 5] = [
    "noising.gif",
    "strip.png",
    "run.json",
    "index.html",
    "trajectory.safetensors",
];

/// The timesteps that become frames.
fn frame_timesteps(frames: &FrameChoice, schedule: &NoiseSchedule) -> Result<Vec<usize>> {
    Ok(match frames {
        FrameChoice::Spaced(FrameCount::All, _) => (0..schedule.len()).collect(),
        FrameChoice::Spaced(FrameCount::Count(n), FrameSpacing::Linear) => {
            forward::evenly_spaced_timesteps(*n, schedule.len())?
        }
        FrameChoice::Spaced(FrameCount::Count(n), FrameSpacing::Signal) => {
            forward::signal_spaced_timesteps(*n, schedule)?
        }
        FrameChoice::List(ts) => forward::checked_timesteps(schedule, ts)?,
    })
}

/// The output folder's index.html.
fn write_page(out: &std::path::Path, report: &NoiseReport) -> Result<()> {
    let pictures = [
        Picture {
            file: "strip.png",
            caption: "eight frames of forward diffusion, t growing left to right",
        },
        Picture {
            file: "noising.gif",
            caption: "every frame as an animation: the picture drowns in noise",
        },
    ];
    let intro = "Forward diffusion: x_t = sqrt(alpha_bar_t)*x0 + sqrt(1-alpha_bar_t)*eps. Each frame's title says how much of the picture (and of the noise) is in it.";
    write_index(out, "diffuse noise", intro, &pictures, report)?;
    Ok(())
}

pub fn run(opts: &NoiseOptions, device: &Device, progress: &dyn Progress) -> Result<NoiseReport> {
    let start = Instant::now();
    let schedule = NoiseSchedule::new(opts.schedule)?;
    let timesteps = frame_timesteps(&opts.frames, &schedule)?;
    animation::check_fps(opts.fps)?;
    let t0 = Instant::now();
    let img = load(opts, device, progress)?;
    let load_ms = ms(t0);

    let k = display_factor(img.size.0.max(img.size.1) as usize) as u32;
    if k > 1 {
        progress.note(&format!(
            "the GIF and strip show the picture at {}x{} (1/{k}); frames/ keeps it at {}x{}",
            img.size.0 / k,
            img.size.1 / k,
            img.size.0,
            img.size.1
        ));
    }
    let _lock = fs::prepare_output_dir(&opts.out, opts.force)?;
    if opts.force {
        // An earlier run's files; its frames go in the writer below.
        fs::remove_owned(&opts.out, |name| OWNED.contains(&name))?;
    }
    let mut frames = animation::AnimationWriter::new(
        &opts.out,
        "noising.gif",
        timesteps.len(),
        opts.fps,
        opts.force,
    )?;
    let t0 = Instant::now();
    let mut rng = rng::rng(opts.seed);
    let total_steps = match opts.mode {
        NoiseMode::Shared => timesteps.len(),
        NoiseMode::Markov => timesteps.last().map_or(0, |t| t + 1),
    };
    let mut kept: Vec<Tensor> = Vec::new();
    progress.stage("diffusing", total_steps as u64);
    let noise = forward::diffuse_observed(
        &schedule,
        &img.x0,
        &timesteps,
        opts.mode,
        &mut rng,
        |i, x_t| {
            if opts.save_tensors {
                kept.push(x_t.clone());
            }
            let (frame, shown) = forward_frame(&schedule, x_t, timesteps[i], (i, timesteps.len()))?;
            frames.push_shown(frame, shown, || format!("t={}", timesteps[i]))
        },
        |_, _| progress.advance(1),
    )?;
    progress.finish();
    let written_before = frames.busy_ms();
    let diffuse_ms = ms(t0) - written_before;
    progress.stage("writing GIF, strip", 0);
    let animation = frames.finish()?;
    progress.finish();

    let t0 = Instant::now();
    let mut files = animation.files.clone();
    if opts.save_tensors {
        let x_t = Tensor::stack(&kept, 0)?; // [N, 3, H, W]
        let tensors = vec![("x0", img.x0.clone()), ("noise", noise), ("x_t", x_t)];
        let path = opts.out.join("trajectory.safetensors");
        safetensors::save_trajectory(&path, tensors, &timesteps)?;
        files.push("trajectory.safetensors".into());
    }
    let tensors_ms = ms(t0);
    files.extend(["run.json", "index.html"].map(String::from));
    let timings = NoiseTimings {
        load_ms,
        diffuse_ms,
        frames_ms: animation.frames_ms,
        gif_ms: animation.gif_ms,
        strip_ms: animation.strip_ms,
        tensors_ms,
        total_ms: ms(start),
    };
    let report = report(opts, &img, &schedule, timesteps, files, device, timings);
    write_run_json(&opts.out, &report)?;
    write_page(&opts.out, &report)?;
    Ok(report)
}

/// Frame `i` of `n` of forward diffusion, `x_t` `[3, H, W]` at timestep `t`, titled with
/// how much of the picture is left; with a display version (the picture area-averaged down
/// to at most [`DISPLAY_MAX_SIDE`] a side) for the GIF and the strip when it is larger.
fn forward_frame(
    schedule: &NoiseSchedule,
    x_t: &Tensor,
    t: usize,
    (i, n): (usize, usize),
) -> Result<(::image::RgbImage, Option<::image::RgbImage>)> {
    let a = schedule.alphas_cumprod[t];
    let title = format!(
        "frame {}/{n}: t={t}, alpha_bar={a:.3}: {:.0} % picture, {:.0} % noise (in amplitude)",
        i + 1,
        100.0 * a.sqrt(),
        100.0 * (1.0 - a).sqrt()
    );
    let frame = |x: &Tensor| -> Result<::image::RgbImage> {
        let (_, h, w) = x.dims3()?;
        let rows = [Row {
            name: "x_t = sqrt(alpha_bar)*x0 + sqrt(1-alpha_bar)*eps",
            tiles: Tiles::Images(&x.unsqueeze(0)?),
        }];
        let side = h.max(w);
        let scale = crate::render::frame::default_scale(side);
        labelled_frame(&title, &rows, (1, side, scale), None)
    };
    let (_, h, w) = x_t.dims3()?;
    let k = display_factor(h.max(w));
    let shown = match k {
        1 => None,
        // Each display pixel is the mean of a k×k block: [3, H/k, W/k].
        _ => Some(frame(&x_t.unsqueeze(0)?.avg_pool2d(k)?.squeeze(0)?)?),
    };
    Ok((frame(x_t)?, shown))
}

/// The factor a picture of longest side `side` is scaled down by on the GIF and the strip.
fn display_factor(side: usize) -> usize {
    side.div_ceil(DISPLAY_MAX_SIDE as usize).max(1)
}

/// What was done, for `run.json`.
fn report(
    opts: &NoiseOptions,
    img: &LoadedImage,
    schedule: &NoiseSchedule,
    timesteps: Vec<usize>,
    files: Vec<String>,
    device: &Device,
    timings: NoiseTimings,
) -> NoiseReport {
    NoiseReport {
        command: "noise",
        diffuse_version: env!("CARGO_PKG_VERSION"),
        image: opts.image.clone(),
        out: opts.out.clone(),
        original_size: [img.original_size.0, img.original_size.1],
        size: [img.size.0, img.size.1],
        downscaled: img.downscaled,
        max_side: opts.load.max_side,
        forced_size: opts.load.size.map(|s| [s.width, s.height]),
        shown_size: {
            let k = display_factor(img.size.0.max(img.size.1) as usize) as u32;
            [img.size.0 / k, img.size.1 / k]
        },
        beta_schedule: opts.schedule.beta_schedule.name().to_string(),
        train_timesteps: opts.schedule.train_timesteps,
        beta_start: opts.schedule.beta_start,
        beta_end: opts.schedule.beta_end,
        mode: opts.mode,
        seed: opts.seed,
        fps: opts.fps,
        frame_count: timesteps.len(),
        alphas_cumprod: timesteps
            .iter()
            .map(|&t| schedule.alphas_cumprod[t])
            .collect(),
        timesteps,
        files,
        device: crate::device::device_name(device),
        threads: rayon::current_num_threads(),
        timings,
    }
}
