//! `diffuse generate`, `diffuse img2img` and `diffuse inpaint`: reverse diffusion from noise
//! (or from a noised picture, or around the kept part of one) to images for a prompt, frame
//! by frame.

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;

use diffuse::defaults::SamplingDefaults;
use diffuse::edit::inpaint::InpaintMethod;
use diffuse::edit::repaint;
use diffuse::jobs::count;
use diffuse::jobs::generate::{self, GenerateOptions, InitImage, InpaintSpec};
use diffuse::model::LoadedModel;
use diffuse::render::animation::FrameCount;

use super::flags::{
    model_default, parse, DeviceFlag, FrameFlags, ModelFlag, OutputFlags, SamplerTuning,
    SamplingFlags,
};
use super::Context;

#[derive(Args)]
pub struct GenerateCmd {
    #[command(flatten)]
    generate: GenerateArgs,
    /// Start from this noise file instead of seeded noise: `diffuse invert`'s noise.safetensors,
    /// or any safetensors file with one f32 tensor `noise` [K, 3, H, W].
    #[arg(long)]
    from_noise: Option<PathBuf>,
    /// Start at this sampler step, taking the starting noise as the state at its timestep
    /// (default: 0, or the step a noise file from `diffuse invert` holds).
    #[arg(long)]
    start_step: Option<usize>,
}

#[derive(Args)]
pub struct Img2ImgArgs {
    /// The starting picture (resized to the model's resolution).
    #[arg(long)]
    image: PathBuf,
    #[arg(long, allow_hyphen_values = true, help = model_default(
        "How much of the schedule to redo: 0 keeps the picture, 1 starts from pure noise",
        SamplingDefaults::LIBRARY.strength))]
    strength: Option<f64>,
    /// Start at this sampler step instead of one given by --strength (0 redoes every step).
    #[arg(long, conflicts_with = "strength")]
    start_step: Option<usize>,
    #[command(flatten)]
    generate: GenerateArgs,
}

#[derive(Args)]
pub struct InpaintArgs {
    /// The picture (resized to the model's resolution).
    #[arg(long)]
    image: PathBuf,
    /// White where the picture is repainted, black where it is kept (gray above 50 % counts
    /// as white); the same size or aspect ratio as the picture.
    #[arg(long)]
    mask: PathBuf,
    /// Repaint where the mask is black instead.
    #[arg(long)]
    invert_mask: bool,
    /// replace (impose the kept region after every step) or repaint (RePaint, with jumps
    /// back in time).
    #[arg(long, default_value_t = InpaintMethod::Replace, value_parser = parse::<InpaintMethod>)]
    method: InpaintMethod,
    /// RePaint: steps taken forward in time per jump (diffusers' jump_length) [default: 10].
    #[arg(long)]
    jump_length: Option<usize>,
    /// RePaint: how often each jump is made (diffusers' jump_n_sample) [default: 10].
    #[arg(long)]
    jump_n_sample: Option<usize>,
    #[command(flatten)]
    generate: GenerateArgs,
}

impl InpaintArgs {
    fn spec(&self) -> Result<InpaintSpec> {
        let jumps = [
            ("jump-length", self.jump_length),
            ("jump-n-sample", self.jump_n_sample),
        ];
        if let Some((flag, _)) = jumps.iter().find(|(_, v)| v.is_some()) {
            if self.method != InpaintMethod::Repaint {
                super::usage!("--{flag} applies to --method repaint only");
            }
        }
        Ok(InpaintSpec {
            invert_mask: self.invert_mask,
            method: self.method,
            jump_length: self.jump_length.unwrap_or(repaint::DEFAULT_JUMP_LENGTH),
            jump_n_sample: self.jump_n_sample.unwrap_or(repaint::DEFAULT_JUMP_N_SAMPLE),
            ..InpaintSpec::new(self.image.clone(), self.mask.clone())
        })
    }
}

#[derive(Args)]
pub struct GenerateArgs {
    #[command(flatten)]
    device: DeviceFlag,
    /// What to draw, e.g. "a cat with a computer" (emoji64), "a red circle" (shapes32) or ""
    /// (unconditional).
    #[arg(long, allow_hyphen_values = true)]
    prompt: String,
    /// Replaces the unconditional branch of guidance, e.g. "red".
    #[arg(long)]
    negative_prompt: Option<String>,
    #[arg(long, help = model_default("Images to generate side by side", SamplingDefaults::LIBRARY.num_images))]
    num_images: Option<usize>,
    #[command(flatten)]
    sampling: SamplingFlags,
    #[command(flatten)]
    tuning: SamplerTuning,
    /// Seed of the noise (default: a random seed, printed and recorded).
    #[arg(long)]
    seed: Option<u64>,
    /// Output folder (default: out/<prompt>-seed<seed>).
    #[arg(long)]
    out: Option<PathBuf>,
    /// `all`, or about N evenly chosen frames.
    #[arg(long, default_value_t = FrameCount::All, value_parser = parse::<FrameCount>)]
    frames: FrameCount,
    /// Leave out the row of x0 predictions.
    #[arg(long)]
    no_x0: bool,
    /// Also show the model's predicted noise as a row under the x0 guesses.
    #[arg(long)]
    show_noise: bool,
    #[command(flatten)]
    frame: FrameFlags,
    #[command(flatten)]
    model: ModelFlag,
    /// Also write cross-attention maps of every prompt word (text models): attention/*.png,
    /// grid.png and attention.gif.
    #[arg(long)]
    attention_maps: bool,
    #[arg(long, requires = "attention_maps", help = model_default(
        "With --attention-maps: about this many evenly chosen steps",
        SamplingDefaults::LIBRARY.attention_steps))]
    attention_steps: Option<usize>,
    /// Also write trajectory.safetensors (x_t and x0_pred at every step).
    #[arg(long)]
    save_tensors: bool,
    /// Is it new? Find each sample's K nearest scenes among every scene the model was trained
    /// on: nearest.png, a row per sample on index.html, the distances in run.json (1..=64).
    #[arg(long, value_name = "K")]
    nearest: Option<usize>,
    #[command(flatten)]
    output: OutputFlags,
}

impl GenerateArgs {
    /// The options for plain generation with `model`'s defaults where a flag is left out;
    /// the callers add img2img's or inpaint's inputs.
    fn options(&self, model: &LoadedModel) -> GenerateOptions {
        let d = model.defaults();
        let seed = self.seed.unwrap_or_else(diffuse::rng::random_seed);
        let (sampler, guidance) = self.sampling.resolve(model);
        GenerateOptions {
            init_image: None,
            inpaint: None,
            from_noise: None,
            start_step: None,
            prompt: self.prompt.clone(),
            negative_prompt: self.negative_prompt.clone(),
            num_images: self.num_images.unwrap_or(d.num_images),
            sampler: self.tuning.apply(sampler),
            guidance,
            seed,
            out: self
                .out
                .clone()
                .unwrap_or_else(|| generate::default_out(&self.prompt, seed)),
            frames: self.frames,
            x0_row: !self.no_x0,
            show_noise: self.show_noise,
            scale: self.frame.scale,
            fps: self.frame.fps,
            save_tensors: self.save_tensors,
            force: self.output.force,
            attention_maps: self
                .attention_maps
                .then_some(self.attention_steps.unwrap_or(d.attention_steps)),
            nearest: self.nearest,
        }
    }

    fn model(&self, ctx: &Context) -> Result<LoadedModel> {
        ctx.model(&self.device, &self.model)
    }
}

pub fn run(args: &GenerateCmd, ctx: &Context) -> Result<()> {
    let model = args.generate.model(ctx)?;
    let mut opts = GenerateOptions {
        from_noise: args.from_noise.clone(),
        start_step: args.start_step,
        ..args.generate.options(&model)
    };
    if let (Some(noise), None) = (&args.from_noise, &args.generate.out) {
        opts.out = generate::default_out_from_noise(&args.generate.prompt, noise);
    }
    run_with(&args.generate, &model, opts, ctx)
}

pub fn run_img2img(args: &Img2ImgArgs, ctx: &Context) -> Result<()> {
    let model = args.generate.model(ctx)?;
    let init = InitImage {
        path: args.image.clone(),
        strength: args.strength.unwrap_or(model.defaults().strength),
    };
    let opts = GenerateOptions {
        init_image: Some(init),
        start_step: args.start_step,
        ..args.generate.options(&model)
    };
    run_with(&args.generate, &model, opts, ctx)
}

pub fn run_inpaint(args: &InpaintArgs, ctx: &Context) -> Result<()> {
    let spec = args.spec()?;
    let model = args.generate.model(ctx)?;
    let opts = GenerateOptions {
        inpaint: Some(spec),
        ..args.generate.options(&model)
    };
    run_with(&args.generate, &model, opts, ctx)
}

fn run_with(
    args: &GenerateArgs,
    model: &LoadedModel,
    opts: GenerateOptions,
    ctx: &Context,
) -> Result<()> {
    let report = generate::run(model, &opts, &ctx.bars)?;
    let n = |v: usize| v as u64;
    let how = match &report.inpaint {
        Some(i) if i.method == InpaintMethod::Repaint => format!(
            "RePaint over {} (jump length {}, {})",
            count(n(report.timesteps.len()), "timestep"),
            i.jump_length,
            count(n(i.jump_n_sample), "jump")
        ),
        _ => format!(
            "{} {}",
            report.sampler.kind,
            count(n(report.timesteps.len()), "step")
        ),
    };
    args.output.print(&report, || {
        format!(
            "\"{}\": {}, {how}, guidance {}, {} -> {} ({}, {:.2} s sampling)",
            report.prompt,
            count(n(report.num_images), "image"),
            report.guidance,
            match report.seed_used {
                true => format!("seed {}", report.seed),
                false => "no seed used (the noise file, a deterministic sampler)".into(),
            },
            report.out.display(),
            count(n(report.frame_count), "frame"),
            report.sampling_ms / 1e3
        )
    })
}
