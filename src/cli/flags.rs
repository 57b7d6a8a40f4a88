//! Flag groups shared by several commands, and the value parser that turns any library
//! `FromStr` type into a clap value (its error is the library's one-line message).

use std::path::PathBuf;

use clap::Args;

use diffuse::defaults::SamplingDefaults;
use diffuse::device::DeviceChoice;
use diffuse::model::LoadedModel;
use diffuse::sampler::{SamplerConfig, SamplerKind, TimestepSpacing};
use diffuse::schedule::{BetaSchedule, ScheduleConfig};

/// Parses a flag value with the library's `FromStr`, so clap prints the library's message.
pub fn parse<T>(s: &str) -> Result<T, String>
where
    T: std::str::FromStr<Err = diffuse::Error>,
{
    s.parse().map_err(|e: diffuse::Error| e.to_string())
}

/// The library's sampling defaults, which the help texts quote.
const LIBRARY: SamplingDefaults = SamplingDefaults::LIBRARY;

/// Schedule flags shared by every command that uses one (diffusers' names and defaults).
#[derive(Args, Clone)]
pub struct ScheduleFlags {
    /// Number of training timesteps T (diffusers `num_train_timesteps`).
    #[arg(long, default_value_t = ScheduleConfig::default().train_timesteps)]
    pub train_timesteps: usize,
    /// β at t = 0 (diffusers `beta_start`).
    #[arg(long, default_value_t = ScheduleConfig::default().beta_start, allow_hyphen_values = true)]
    pub beta_start: f64,
    /// β at t = T-1 (diffusers `beta_end`).
    #[arg(long, default_value_t = ScheduleConfig::default().beta_end, allow_hyphen_values = true)]
    pub beta_end: f64,
}

impl ScheduleFlags {
    pub fn config(&self, beta_schedule: BetaSchedule) -> ScheduleConfig {
        ScheduleConfig {
            beta_schedule,
            train_timesteps: self.train_timesteps,
            beta_start: self.beta_start,
            beta_end: self.beta_end,
        }
    }
}

/// "[default: the model's; VALUE for the shipped models]", for a flag whose default the
/// model may record.
pub fn model_default(what: &str, value: impl std::fmt::Display) -> String {
    format!("{what} [default: the model's; {value} for the shipped models]")
}

/// How a trained model is sampled: shared by `generate`, `img2img` and `eval`. A flag left
/// out takes the model's sampling default (`LoadedModel::defaults`).
#[derive(Args, Clone)]
pub struct SamplingFlags {
    #[arg(long, value_parser = parse::<SamplerKind>,
          help = model_default("ddpm, ddim or dpm++2m (measured with `diffuse eval`)", LIBRARY.sampler))]
    pub sampler: Option<SamplerKind>,
    #[arg(long, help = model_default("Denoising steps (1000 with DDPM is the full chain)", LIBRARY.steps))]
    pub steps: Option<usize>,
    #[arg(long, allow_hyphen_values = true,
          help = model_default("Classifier-free guidance scale (1 = no guidance)", LIBRARY.guidance))]
    pub guidance: Option<f64>,
    /// Turn off dynamic thresholding of the x0 prediction (diffusers' `thresholding`, on by
    /// default as diffusers recommends for pixel-space models); DDPM and DDIM then clip x0.
    #[arg(long)]
    pub no_thresholding: bool,
}

impl SamplingFlags {
    /// The sampler and guidance scale asked for, the model's defaults where left out.
    pub fn resolve(&self, model: &LoadedModel) -> (SamplerConfig, f64) {
        let d = model.defaults();
        let kind = self.sampler.unwrap_or(d.sampler);
        let mut config = model.default_sampler(kind, self.steps.unwrap_or(d.steps));
        config.thresholding &= !self.no_thresholding;
        (config, self.guidance.unwrap_or(d.guidance))
    }
}

/// Sampler options only `generate` and `img2img` expose.
#[derive(Args, Clone)]
pub struct SamplerTuning {
    #[arg(long, allow_hyphen_values = true, help = model_default("DDIM's η (0 = deterministic)", LIBRARY.eta))]
    pub eta: Option<f64>,
    /// leading, trailing or linspace (default: the sampler's diffusers default).
    #[arg(long, value_parser = parse::<TimestepSpacing>)]
    pub timestep_spacing: Option<TimestepSpacing>,
    /// Do not clamp the x0 prediction to [-1, 1] (diffusers' clip_sample=False; DDPM, DDIM).
    #[arg(long)]
    pub no_clip_sample: bool,
}

impl SamplerTuning {
    /// `config` with these flags applied.
    pub fn apply(&self, config: SamplerConfig) -> SamplerConfig {
        SamplerConfig {
            eta: self.eta.unwrap_or(config.eta),
            clip_sample: config.clip_sample && !self.no_clip_sample,
            timestep_spacing: self.timestep_spacing.unwrap_or(config.timestep_spacing),
            ..config
        }
    }
}

/// `--device`, taken by the commands that run tensor math (not `schedule` or `data`).
#[derive(Args, Clone)]
pub struct DeviceFlag {
    /// Where tensors live: auto, cpu, cuda or metal.
    #[arg(long, default_value_t = DeviceChoice::Auto, value_parser = parse::<DeviceChoice>)]
    pub device: DeviceChoice,
}

/// How frames are drawn (generate, img2img, inpaint, invert, interpolate).
#[derive(Args, Clone)]
pub struct FrameFlags {
    #[arg(long, help = format!("Nearest-neighbour upscaling of each image [default: at least {} px]", LIBRARY.display_side))]
    pub scale: Option<u32>,
    /// GIF frames per second.
    #[arg(long, default_value_t = LIBRARY.fps, allow_negative_numbers = true)]
    pub fps: f64,
}

/// `--model`: a model file, a diffusers folder or a built-in model's name; the default
/// built-in model when left out.
#[derive(Args, Clone)]
pub struct ModelFlag {
    /// Model file, diffusers folder, or built-in model: emoji64 (the default) or shapes32.
    #[arg(long)]
    pub model: Option<PathBuf>,
}

/// The output-folder flags of the commands that write one (`noise`, `generate`, `img2img`).
#[derive(Args, Clone)]
pub struct OutputFlags {
    /// Write into a non-empty output folder.
    #[arg(long)]
    pub force: bool,
    /// Print run.json's content on stdout.
    #[arg(long)]
    pub json: bool,
}

impl OutputFlags {
    /// Prints the report as one JSON line with `--json`, else the one-line `summary`.
    pub fn print<R: serde::Serialize>(
        &self,
        report: &R,
        summary: impl FnOnce() -> String,
    ) -> anyhow::Result<()> {
        use std::io::Write;
        let mut out = std::io::stdout().lock();
        if self.json {
            writeln!(out, "{}", serde_json::to_string(report)?)?;
        } else {
            writeln!(out, "{}", summary())?;
        }
        Ok(())
    }
}
