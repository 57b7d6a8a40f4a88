//! `diffuse compare`: one prompt and noise, several values of one setting, one labelled row
//! per value.

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;

use diffuse::defaults::SamplingDefaults;
use diffuse::jobs::compare::{self, Axis, CompareOptions};
use diffuse::sampler::SamplerKind;

use super::flags::{model_default, parse, DeviceFlag, ModelFlag, OutputFlags};

const LIBRARY: SamplingDefaults = SamplingDefaults::LIBRARY;
use super::Context;

#[derive(Args)]
pub struct CompareArgs {
    #[command(flatten)]
    device: DeviceFlag,
    /// What to draw.
    #[arg(long, allow_hyphen_values = true)]
    prompt: String,
    #[arg(long, value_delimiter = ',', allow_hyphen_values = true,
          help = model_default("Guidance scale, or several to compare: 0,1,3,7", LIBRARY.guidance))]
    guidance: Vec<f64>,
    #[arg(long, value_delimiter = ',', value_parser = parse::<SamplerKind>,
          help = model_default("Sampler, or several to compare: ddpm,ddim,dpm++2m", LIBRARY.sampler))]
    sampler: Vec<SamplerKind>,
    #[arg(long, value_delimiter = ',',
          help = model_default("Denoising steps, or several to compare: 5,10,20", LIBRARY.steps))]
    steps: Vec<usize>,
    /// Seed of the noise, or several to compare: 1,2,3,4.
    #[arg(long, value_delimiter = ',', default_value = "0")]
    seed: Vec<u64>,
    /// States shown per row, from the noise to the final image.
    #[arg(long, default_value_t = compare::DEFAULT_FRAMES)]
    frames: usize,
    /// Turn off dynamic thresholding of the x0 prediction (as generate).
    #[arg(long)]
    no_thresholding: bool,
    #[arg(long, help = format!("Nearest-neighbour upscaling of each image [default: at least {} px, at most 4x]", LIBRARY.display_side))]
    scale: Option<u32>,
    /// The picture to write.
    #[arg(long, default_value = "compare.png")]
    out: PathBuf,
    #[command(flatten)]
    model: ModelFlag,
    #[command(flatten)]
    output: OutputFlags,
}

impl CompareArgs {
    /// The one setting with several values.
    fn axis(&self) -> Result<Axis> {
        let many = [
            ("guidance", self.guidance.len()),
            ("sampler", self.sampler.len()),
            ("steps", self.steps.len()),
            ("seed", self.seed.len()),
        ];
        let varied: Vec<&str> = many
            .iter()
            .filter(|(_, n)| *n > 1)
            .map(|(f, _)| *f)
            .collect();
        Ok(match varied.as_slice() {
            ["guidance"] => Axis::Guidance(self.guidance.clone()),
            ["sampler"] => Axis::Sampler(self.sampler.clone()),
            ["steps"] => Axis::Steps(self.steps.clone()),
            ["seed"] => Axis::Seed(self.seed.clone()),
            [] => super::usage!("--guidance, --sampler, --steps or --seed: give one of them several comma-separated values to compare"),
            more => super::usage!("--{} and --{}: compare one setting at a time", more[0], more[1]),
        })
    }
}

pub fn run(args: &CompareArgs, ctx: &Context) -> Result<()> {
    let axis = args.axis()?;
    let model = ctx.model(&args.device, &args.model)?;
    let d = model.defaults();
    let kind = args.sampler.first().copied().unwrap_or(d.sampler);
    let mut sampler = model.default_sampler(kind, args.steps.first().copied().unwrap_or(d.steps));
    sampler.thresholding &= !args.no_thresholding;
    let opts = CompareOptions {
        prompt: args.prompt.clone(),
        axis,
        sampler,
        guidance: args.guidance.first().copied().unwrap_or(d.guidance),
        seed: args.seed[0],
        frames: args.frames,
        scale: args.scale,
        out: args.out.clone(),
        force: args.output.force,
    };
    let report = compare::run(&model, &opts, &ctx.bars)?;
    args.output.print(&report, || {
        format!(
            "\"{}\": {} rows ({}) -> {}",
            report.prompt,
            report.rows.len(),
            report.rows.join(", "),
            report.out.display()
        )
    })
}
