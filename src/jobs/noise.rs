//! `diffuse noise`: forward diffusion of a chosen picture, written as frames, a GIF,
//! a labelled strip, `run.json` and optionally the raw trajectory.

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::Instant;

use candle_core::{DType, Device, Tensor};
use serde::Serialize;

use crate::error::{Error, Result};
use crate::forward::{self, NoiseMode};
use crate::frames;
use crate::fsutil;
use crate::load::{self, LoadOptions};
use crate::progress::Progress;
use crate::rng;
use crate::schedule::{NoiseSchedule, ScheduleConfig};

/// Default number of evenly spaced frames.
pub const DEFAULT_FRAMES: usize = 50;
/// Default GIF speed.
pub const DEFAULT_FPS: f64 = 12.0;
/// Frames shown on the contact strip.
pub const STRIP_FRAMES: usize = 8;

/// Which timesteps become frames.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FrameChoice {
    /// `n` timesteps spaced evenly over 0..=T-1.
    Even(usize),
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
    pub image: PathBuf,
    pub out: PathBuf,
    pub original_size: [u32; 2],
    pub size: [u32; 2],
    pub downscaled: bool,
    pub max_side: u32,
    pub forced_size: Option<[u32; 2]>,
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

fn ms(since: Instant) -> f64 {
    since.elapsed().as_secs_f64() * 1e3
}

/// Removes frames left by an earlier run (only called with `--force`).
fn clear_old_frames(dir: &Path) -> Result<()> {
    let Ok(entries) = fs::read_dir(dir) else {
        return Ok(());
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if name.starts_with("frame_") && name.ends_with(".png") {
            fs::remove_file(e.path()).map_err(|reason| Error::Write {
                path: e.path(),
                reason,
            })?;
        }
    }
    Ok(())
}

/// Runs `diffuse noise`. Validates every input before it writes anything.
pub fn run(opts: &NoiseOptions, device: &Device, progress: &dyn Progress) -> Result<NoiseReport> {
    let start = Instant::now();
    let schedule = NoiseSchedule::new(opts.schedule)?;
    let timesteps = match &opts.frames {
        FrameChoice::Even(n) => forward::evenly_spaced_timesteps(*n, schedule.len())?,
        FrameChoice::List(ts) => forward::checked_timesteps(&schedule, ts)?,
    };
    if !(opts.fps > 0.0 && opts.fps <= 100.0) {
        return Err(Error::invalid(format!(
            "--fps {} is out of range (0, 100]",
            opts.fps
        )));
    }

    let t0 = Instant::now();
    let img = load::load_image(&opts.image, &opts.load, device)?;
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
    let load_ms = ms(t0);

    fsutil::prepare_output_dir(&opts.out, opts.force)?;
    let frames_dir = opts.out.join("frames");
    if opts.force {
        clear_old_frames(&frames_dir)?;
    }

    let t0 = Instant::now();
    let mut rng = rng::rng(opts.seed);
    let total_steps = match opts.mode {
        NoiseMode::Shared => timesteps.len(),
        NoiseMode::Markov => timesteps.last().map_or(0, |t| t + 1),
    };
    progress.stage("diffusing", total_steps as u64);
    let traj = forward::diffuse(
        &schedule,
        &img.x0,
        &timesteps,
        opts.mode,
        &mut rng,
        |_, _| progress.advance(1),
    )?;
    progress.finish();
    let diffuse_ms = ms(t0);

    let t0 = Instant::now();
    let images = traj
        .x_t
        .iter()
        .map(frames::to_rgb8)
        .collect::<Result<Vec<_>>>()?;
    progress.stage("writing frames", images.len() as u64);
    let written = frames::write_frames(&images, &frames_dir, &|| progress.advance(1))?;
    progress.finish();
    let frames_ms = ms(t0);

    let t0 = Instant::now();
    progress.stage("encoding GIF", 1);
    let gif = frames::gif_bytes(&images, opts.fps)?;
    fsutil::write_atomic(&opts.out.join("noising.gif"), &gif)?;
    progress.finish();
    let gif_ms = ms(t0);

    let t0 = Instant::now();
    let strip = frames::contact_strip(&images, &timesteps, STRIP_FRAMES);
    frames::save_png(&strip, &opts.out.join("strip.png"))?;
    let strip_ms = ms(t0);

    let t0 = Instant::now();
    let mut files = frames::frame_file_names(&written);
    files.extend(["noising.gif".to_string(), "strip.png".to_string()]);
    if opts.save_tensors {
        save_trajectory(&traj, &opts.out.join("trajectory.safetensors"))?;
        files.push("trajectory.safetensors".into());
    }
    let tensors_ms = ms(t0);
    files.push("run.json".into());

    let report = NoiseReport {
        command: "noise",
        diffuse_version: env!("CARGO_PKG_VERSION"),
        image: opts.image.clone(),
        out: opts.out.clone(),
        original_size: [img.original_size.0, img.original_size.1],
        size: [img.size.0, img.size.1],
        downscaled: img.downscaled,
        max_side: opts.load.max_side,
        forced_size: opts.load.size.map(|s| [s.width, s.height]),
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
        timings: NoiseTimings {
            load_ms,
            diffuse_ms,
            frames_ms,
            gif_ms,
            strip_ms,
            tensors_ms,
            total_ms: ms(start),
        },
    };
    let json = serde_json::to_vec_pretty(&report).expect("report serialises");
    fsutil::write_atomic(&opts.out.join("run.json"), &json)?;
    Ok(report)
}

/// Writes `x0` [3,H,W], `noise` [3,H,W], `x_t` [N,3,H,W] and `timesteps` [N] (i64).
pub fn save_trajectory(traj: &forward::Trajectory, path: &Path) -> Result<()> {
    let device = traj.x0.device();
    let ts: Vec<i64> = traj.timesteps.iter().map(|&t| t as i64).collect();
    let n = ts.len();
    let tensors: HashMap<String, Tensor> = HashMap::from([
        ("x0".to_string(), traj.x0.to_dtype(DType::F32)?),
        ("noise".to_string(), traj.noise.to_dtype(DType::F32)?),
        ("x_t".to_string(), traj.stacked()?.to_dtype(DType::F32)?),
        ("timesteps".to_string(), Tensor::from_vec(ts, n, device)?),
    ]);
    fsutil::save_tensors(path, &tensors)
}
