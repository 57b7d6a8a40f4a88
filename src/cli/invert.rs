//! `diffuse invert`: DDIM inversion of a picture to its starting noise, and the round trip.

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;

use diffuse::jobs::invert::{self, InvertOptions};
use diffuse::render::animation::FrameCount;
use diffuse::sampler::{SamplerConfig, SamplerKind, TimestepSpacing};

use super::flags::{parse, DeviceFlag, FrameFlags, ModelFlag, OutputFlags};
use super::Context;

#[derive(Args)]
pub struct InvertArgs {
    #[command(flatten)]
    device: DeviceFlag,
    /// The picture to invert (resized to the model's resolution).
    #[arg(long)]
    image: PathBuf,
    /// The prompt to invert under ("" for none).
    #[arg(long, default_value = "", allow_hyphen_values = true)]
    prompt: String,
    /// Only deterministic ddim can be inverted.
    #[arg(long, default_value_t = SamplerKind::Ddim, value_parser = parse::<SamplerKind>)]
    sampler: SamplerKind,
    /// DDIM steps.
    #[arg(long, default_value_t = invert::DEFAULT_STEPS)]
    steps: usize,
    /// DDIM's η: only 0 (deterministic) can be inverted.
    #[arg(long, default_value_t = 0.0, allow_hyphen_values = true)]
    eta: f64,
    /// Classifier-free guidance while inverting and reconstructing (1 = none).
    #[arg(long, default_value_t = invert::DEFAULT_GUIDANCE, allow_hyphen_values = true)]
    guidance: f64,
    /// leading, trailing or linspace (default: DDIM's diffusers default, leading).
    #[arg(long, value_parser = parse::<TimestepSpacing>)]
    timestep_spacing: Option<TimestepSpacing>,
    /// Stop at this sampler step instead of going all the way to x_T (generate --from-noise
    /// then starts there).
    #[arg(long, default_value_t = 0)]
    start_step: usize,
    /// Output folder (default: out/invert-<picture name>).
    #[arg(long)]
    out: Option<PathBuf>,
    /// `all`, or about N evenly chosen frames.
    #[arg(long, default_value_t = FrameCount::All, value_parser = parse::<FrameCount>)]
    frames: FrameCount,
    #[command(flatten)]
    frame: FrameFlags,
    #[command(flatten)]
    model: ModelFlag,
    #[command(flatten)]
    output: OutputFlags,
}

pub fn run(args: &InvertArgs, ctx: &Context) -> Result<()> {
    let model = ctx.model(&args.device, &args.model)?;
    let mut sampler = SamplerConfig {
        kind: args.sampler,
        eta: args.eta,
        ..invert::default_sampler(args.steps)
    };
    if let Some(sp) = args.timestep_spacing.or(model.folder_spacing()) {
        sampler.timestep_spacing = sp;
    }
    let stem = args
        .image
        .file_stem()
        .map_or("picture".into(), |s| s.to_string_lossy());
    let opts = InvertOptions {
        image: args.image.clone(),
        model: args.model.model.clone(),
        prompt: args.prompt.clone(),
        sampler,
        guidance: args.guidance,
        start_step: args.start_step,
        out: args
            .out
            .clone()
            .unwrap_or_else(|| PathBuf::from("out").join(format!("invert-{stem}"))),
        frames: args.frames,
        scale: args.frame.scale,
        fps: args.frame.fps,
        force: args.output.force,
    };
    let report = invert::run(&model, &opts, &ctx.bars)?;
    args.output.print(&report, || {
        format!(
            "{} -> {}: {} DDIM steps up to t={}, round trip PSNR {:.2} dB; reconstruct with: {}",
            report.image.display(),
            report.out.display(),
            report.timesteps.len(),
            report.timesteps.last().copied().unwrap_or(0),
            report.psnr_db,
            report.reconstruct_command
        )
    })
}
