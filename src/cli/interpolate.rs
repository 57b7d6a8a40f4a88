//! `diffuse interpolate`: a smooth walk between two seeds and/or two prompts.

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;

use diffuse::defaults::SamplingDefaults;
use diffuse::jobs::interpolate::{self, InterpolateOptions};
use diffuse::sampler::{SamplerKind, TimestepSpacing};

use super::flags::{model_default, parse, DeviceFlag, FrameFlags, ModelFlag, OutputFlags};

const LIBRARY: SamplingDefaults = SamplingDefaults::LIBRARY;
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
    #[arg(long, help = model_default("Denoising steps per frame", LIBRARY.steps))]
    steps: Option<usize>,
    #[arg(long, allow_hyphen_values = true,
          help = model_default("Classifier-free guidance scale (1 = no guidance)", LIBRARY.guidance))]
    guidance: Option<f64>,
    #[arg(long, allow_hyphen_values = true, help = model_default("DDIM's η (0 = deterministic)", LIBRARY.eta))]
    eta: Option<f64>,
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
    let model = ctx.model(&args.device, &args.model)?;
    let seed = args.seed.unwrap_or_else(diffuse::rng::random_seed);
    let seed_to = args.seed_to.unwrap_or(seed);
    let d = model.defaults();
    let mut sampler = model.default_sampler(args.sampler, args.steps.unwrap_or(d.steps));
    sampler.thresholding &= !args.no_thresholding;
    sampler.eta = args.eta.unwrap_or(d.eta);
    if let Some(sp) = args.timestep_spacing {
        sampler.timestep_spacing = sp;
    }
    let guidance = args.guidance.unwrap_or(d.guidance);
    let slug = diffuse::prompt::slug(&args.prompt);
    let default_out = format!("interpolate-{slug}-seed{seed}-{seed_to}");
    let opts = InterpolateOptions {
        prompt: args.prompt.clone(),
        prompt_to: args.prompt_to.clone(),
        seed,
        seed_to,
        frames: args.frames,
        sampler,
        guidance,
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
            "\"{}\" seed {} -> \"{}\" seed {}: {}, {} {} each -> {} ({:.2} s sampling)",
            report.prompt,
            report.seed,
            report.prompt_to,
            report.seed_to,
            diffuse::jobs::count(report.weights.len() as u64, "frame"),
            report.sampler.kind,
            diffuse::jobs::count(report.sampler.steps as u64, "step"),
            report.out.display(),
            report.sampling_ms / 1e3
        )
    })
}
