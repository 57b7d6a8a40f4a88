//! `diffuse interpolate`: a smooth walk between two seeds and/or two prompts.

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;

use diffuse::jobs::interpolate::{self, InterpolateOptions};
use diffuse::sampler::{SamplerConfig, SamplerKind, TimestepSpacing};

use super::flags::{parse, DeviceFlag, FrameFlags, ModelFlag, OutputFlags};
use super::Context;

#[derive(Args)]
pub struct InterpolateArgs {
    #[command(flatten)]
    device: DeviceFlag,
    /// The prompt at the start, e.g. "a cat".
    #[arg(long, allow_hyphen_values = true)]
    prompt: String,
    /// The prompt at the end (default: the same prompt).
    #[arg(long, allow_hyphen_values = true)]
    prompt_to: Option<String>,
    /// Seed of the starting noise (default: a random seed, printed and recorded).
    #[arg(long)]
    seed: Option<u64>,
    /// Seed of the noise at the end (default: --seed).
    #[arg(long)]
    seed_to: Option<u64>,
    /// Frames, the two ends included; each is a whole sample.
    #[arg(long, default_value_t = interpolate::DEFAULT_FRAMES)]
    frames: usize,
    /// ddim (deterministic, with --eta 0), ddpm or dpm++2m.
    #[arg(long, default_value_t = interpolate::DEFAULT_SAMPLER, value_parser = parse::<SamplerKind>)]
    sampler: SamplerKind,
    /// Denoising steps per frame.
    #[arg(long, default_value_t = diffuse::jobs::generate::DEFAULT_STEPS)]
    steps: usize,
    /// Classifier-free guidance scale (1 = no guidance).
    #[arg(long, default_value_t = diffuse::jobs::generate::DEFAULT_GUIDANCE, allow_hyphen_values = true)]
    guidance: f64,
    /// DDIM's η (0 = deterministic).
    #[arg(long, default_value_t = 0.0, allow_hyphen_values = true)]
    eta: f64,
    /// leading, trailing or linspace (default: the sampler's diffusers default).
    #[arg(long, value_parser = parse::<TimestepSpacing>)]
    timestep_spacing: Option<TimestepSpacing>,
    /// Turn off dynamic thresholding of the x0 prediction (as generate).
    #[arg(long)]
    no_thresholding: bool,
    /// Output folder (default: out/interpolate-<prompt>-seed<seed>-<seed-to>).
    #[arg(long)]
    out: Option<PathBuf>,
    #[command(flatten)]
    frame: FrameFlags,
    #[command(flatten)]
    model: ModelFlag,
    #[command(flatten)]
    output: OutputFlags,
}

pub fn run(args: &InterpolateArgs, ctx: &Context) -> Result<()> {
    let device = ctx.device(&args.device)?;
    let model = diffuse::model::load(args.model.model.as_deref(), &device)?;
    let seed = args.seed.unwrap_or_else(|| rand::random::<u64>() >> 11);
    let seed_to = args.seed_to.unwrap_or(seed);
    let mut sampler = SamplerConfig {
        eta: args.eta,
        thresholding: !args.no_thresholding,
        ..SamplerConfig::new(args.sampler, args.steps)
    };
    if let Some(sp) = args.timestep_spacing.or(model.folder_spacing()) {
        sampler.timestep_spacing = sp;
    }
    let slug = diffuse::prompt::slug(&args.prompt);
    let default_out = format!("interpolate-{slug}-seed{seed}-{seed_to}");
    let opts = InterpolateOptions {
        prompt: args.prompt.clone(),
        prompt_to: args.prompt_to.clone(),
        seed,
        seed_to,
        frames: args.frames,
        sampler,
        guidance: args.guidance,
        out: args
            .out
            .clone()
            .unwrap_or_else(|| PathBuf::from("out").join(default_out)),
        scale: args.frame.scale,
        fps: args.frame.fps,
        force: args.output.force,
    };
    let report = interpolate::run(&model, &opts, &ctx.bars)?;
    args.output.print(&report, || {
        format!(
            "\"{}\" seed {} -> \"{}\" seed {}: {} frames, {} {} steps each -> {} ({:.2} s sampling)",
            report.prompt,
            report.seed,
            report.prompt_to,
            report.seed_to,
            report.weights.len(),
            report.sampler.kind,
            report.sampler.steps,
            report.out.display(),
            report.sampling_ms / 1e3
        )
    })
}
