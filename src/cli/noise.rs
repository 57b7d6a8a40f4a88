//! `diffuse noise`: forward diffusion of a picture into frames, a GIF and a strip.

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;

use diffuse::forward::{FrameSpacing, NoiseMode};
use diffuse::io::image::{LoadOptions, Size};
use diffuse::jobs::noise::{self, FrameChoice, NoiseOptions};
use diffuse::render::animation::FrameCount;
use diffuse::schedule::{BetaSchedule, ScheduleConfig};

use super::flags::{parse, DeviceFlag, OutputFlags, ScheduleFlags};
use super::Context;

#[derive(Args)]
pub struct NoiseArgs {
    #[command(flatten)]
    device: DeviceFlag,
    /// The picture to diffuse (PNG, JPEG, GIF, BMP, WebP or TIFF).
    #[arg(long)]
    image: PathBuf,
    /// Output folder; it must be empty or new unless --force.
    #[arg(long)]
    out: PathBuf,
    /// linear, scaled-linear, cosine or sigmoid.
    #[arg(long, default_value_t = ScheduleConfig::default().beta_schedule,
          value_parser = parse::<BetaSchedule>)]
    beta_schedule: BetaSchedule,
    #[command(flatten)]
    schedule: ScheduleFlags,
    /// Timesteps to record, comma-separated (e.g. 0,100,250,999); overrides --frames.
    #[arg(
        long,
        value_delimiter = ',',
        allow_hyphen_values = true,
        conflicts_with = "frames"
    )]
    timesteps: Option<Vec<i64>>,
    /// `all` (every timestep), or N frames from t = 0 to T-1 spaced by --spacing.
    #[arg(long, default_value_t = FrameCount::Count(noise::DEFAULT_FRAMES), value_parser = parse::<FrameCount>)]
    frames: FrameCount,
    /// signal (the picture fades by the same amount from frame to frame) or linear (even
    /// steps of t).
    #[arg(long, default_value_t = noise::DEFAULT_SPACING, value_parser = parse::<FrameSpacing>)]
    spacing: FrameSpacing,
    /// Run the Markov chain q(x_t | x_{t-1}) with fresh noise each step, instead of one ε.
    #[arg(long)]
    markov: bool,
    /// Seed of the noise.
    #[arg(long, default_value_t = noise::DEFAULT_SEED)]
    seed: u64,
    /// GIF frames per second.
    #[arg(long, default_value_t = noise::DEFAULT_FPS, allow_negative_numbers = true)]
    fps: f64,
    /// Scale the picture down when a side is longer than this.
    #[arg(long, default_value_t = LoadOptions::default().max_side)]
    max_side: u32,
    /// Resize to exactly WIDTHxHEIGHT.
    #[arg(long, value_parser = parse::<Size>)]
    size: Option<Size>,
    /// Also write trajectory.safetensors (x0, noise, x_t, timesteps).
    #[arg(long)]
    save_tensors: bool,
    #[command(flatten)]
    output: OutputFlags,
}

impl NoiseArgs {
    fn options(&self) -> NoiseOptions {
        NoiseOptions {
            image: self.image.clone(),
            out: self.out.clone(),
            schedule: self.schedule.config(self.beta_schedule),
            load: LoadOptions {
                max_side: self.max_side,
                size: self.size,
            },
            frames: match &self.timesteps {
                Some(ts) => FrameChoice::List(ts.clone()),
                None => FrameChoice::Spaced(self.frames, self.spacing),
            },
            mode: if self.markov {
                NoiseMode::Markov
            } else {
                NoiseMode::Shared
            },
            seed: self.seed,
            fps: self.fps,
            save_tensors: self.save_tensors,
            force: self.output.force,
        }
    }
}

pub fn run(args: &NoiseArgs, ctx: &Context) -> Result<()> {
    // A few large buffers, not many reused ones: hand them back as soon as they are freed.
    diffuse::alloc::return_freed_memory();
    let device = ctx.device(&args.device)?;
    let report = noise::run(&args.options(), &device, &ctx.bars)?;
    args.output.print(&report, || {
        format!(
            "wrote {} (t = {}..{}), noising.gif and strip.png to {} in {:.2} s",
            diffuse::jobs::count(report.frame_count as u64, "frame"),
            report.timesteps.first().copied().unwrap_or(0),
            report.timesteps.last().copied().unwrap_or(0),
            report.out.display(),
            report.timings.total_ms / 1e3
        )
    })
}
