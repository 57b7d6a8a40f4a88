//! `diffuse train` and `diffuse data`: train the denoiser with a run folder, and write
//! training data to look at.

use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use anyhow::Result;
use clap::{Args, Subcommand};

use diffuse::jobs::{data, train as job};
use diffuse::schedule::{BetaSchedule, ScheduleConfig};
use diffuse::train::config::{DEFAULT_CHECKPOINT_EVERY, DEFAULT_PREVIEW_STEPS};
use diffuse::train::{DataSource, RunOverrides, TrainConfig};
use diffuse::unet::{Prediction, UNetConfig};

use super::flags::{parse, DeviceFlag, ScheduleFlags};
use super::Context;

#[derive(Args)]
pub struct TrainArgs {
    #[command(flatten)]
    device: DeviceFlag,
    /// Training data: `shapes` (the procedural shapes dataset), `emoji` (emoji scenes with
    /// captions, for a text-to-image model) or a folder of pictures (class subfolders: the
    /// folder names become the prompts; flat: unconditional). A folder named `shapes` is
    /// written `./shapes`.
    #[arg(long, conflicts_with = "resume", default_value_t = TrainConfig::default().data, value_parser = parse::<DataSource>)]
    data: DataSource,
    /// Model file to write (EMA weights + config in the safetensors metadata).
    #[arg(long, value_name = "FILE.safetensors")]
    out: PathBuf,
    /// Total optimisation steps.
    /// (Default 10000 for a new run; with --resume, the checkpoint's unless given.)
    #[arg(long)]
    steps: Option<u64>,
    /// Images per step.
    #[arg(long, conflicts_with = "resume", default_value_t = TrainConfig::default().batch_size)]
    batch_size: usize,
    /// Peak learning rate (warm-up, then cosine decay).
    #[arg(long, conflicts_with = "resume", default_value_t = TrainConfig::default().lr)]
    lr: f64,
    /// Seed of the weights and of the trainer's noise.
    #[arg(long, conflicts_with = "resume", default_value_t = TrainConfig::default().seed)]
    seed: u64,
    /// Seed of the shapes dataset.
    #[arg(long, conflicts_with = "resume", default_value_t = TrainConfig::default().data_seed)]
    data_seed: u64,
    /// Width of the UNet's first level.
    #[arg(long, conflicts_with = "resume", default_value_t = UNetConfig::default().base_channels)]
    base_channels: usize,
    /// What the network predicts: epsilon or v_prediction (diffusers' `prediction_type`).
    #[arg(long, conflicts_with = "resume", default_value_t = UNetConfig::default().prediction, value_parser = parse::<Prediction>)]
    prediction_type: Prediction,
    /// Probability of dropping the whole prompt (for classifier-free guidance).
    #[arg(long, conflicts_with = "resume", default_value_t = TrainConfig::default().cond_drop)]
    cond_drop: f64,
    /// linear, scaled-linear, cosine or sigmoid.
    #[arg(long, conflicts_with = "resume", default_value_t = ScheduleConfig::default().beta_schedule,
          value_parser = parse::<BetaSchedule>)]
    beta_schedule: BetaSchedule,
    #[command(flatten)]
    schedule: ScheduleFlags,
    /// Folder for train_log.csv, loss.png, previews and checkpoint.safetensors
    /// (default: runs/<model file stem>; with --resume, the checkpoint's folder).
    #[arg(long)]
    run_dir: Option<PathBuf>,
    /// Continue exactly from this checkpoint (its config wins; --steps may extend the run).
    #[arg(long, value_name = "CKPT")]
    resume: Option<PathBuf>,
    /// Checkpoint, plot and preview every N steps [default: 500; with --resume, the run's].
    #[arg(long)]
    checkpoint_every: Option<u64>,
    /// DDPM steps for the preview grids [default: 50; with --resume, the run's].
    #[arg(long)]
    preview_steps: Option<usize>,
    /// Latent diffusion: learn the latents of this autoencoder (`diffuse train-autoencoder`)
    /// with the latent UNet; needs --data emoji. Its weights go into the model file.
    #[arg(long, conflicts_with = "resume", value_name = "AE.safetensors")]
    autoencoder: Option<PathBuf>,
    /// Min-SNR-γ loss weighting (Hang et al. 2023; diffusers' --snr_gamma, 5 recommended).
    #[arg(long, conflicts_with = "resume", value_name = "GAMMA")]
    snr_gamma: Option<f64>,
    /// Add a 2D sinusoidal position signal to the image tokens before attention.
    #[arg(long, conflicts_with = "resume")]
    position_embedding: bool,
    /// Resolutions (px) with cross-attention, comma-separated [default: the model's own].
    #[arg(
        long,
        conflicts_with = "resume",
        value_delimiter = ',',
        value_name = "PX,..."
    )]
    cross_attention_resolutions: Option<Vec<usize>>,
    /// Resolutions (px) whose transformers attend only to the text (diffusers'
    /// `only_cross_attention`) [default: none].
    #[arg(
        long,
        conflicts_with = "resume",
        value_delimiter = ',',
        value_name = "PX,..."
    )]
    only_cross_attention: Option<Vec<usize>>,
    /// Overwrite an existing model file.
    #[arg(long)]
    force: bool,
}

impl TrainArgs {
    /// The UNet a new run trains: the data's own, with the flags' changes.
    fn unet(&self) -> Result<UNetConfig> {
        let base = match (&self.data, &self.autoencoder) {
            (DataSource::Emoji, Some(ae)) => {
                let (meta, _) =
                    diffuse::vae::train::load_autoencoder(ae, &candle_core::Device::Cpu)?;
                UNetConfig::emoji_latent(&meta.autoencoder)
            }
            (DataSource::Emoji, None) => UNetConfig::emoji(),
            _ => UNetConfig::default(),
        };
        Ok(UNetConfig {
            base_channels: self.base_channels,
            prediction: self.prediction_type,
            position_embedding: self.position_embedding,
            cross_attention_resolutions: (self.cross_attention_resolutions.clone())
                .unwrap_or(base.cross_attention_resolutions.clone()),
            only_cross_attention: (self.only_cross_attention.clone())
                .unwrap_or(base.only_cross_attention.clone()),
            ..base
        })
    }

    /// With `--resume` the run's stored schedule is used; a different one is refused.
    fn check_resume(&self) -> Result<()> {
        let given = self.schedule.config(self.beta_schedule);
        if self.resume.is_some() && given != ScheduleConfig::default() {
            super::usage!(
                "--train-timesteps, --beta-start and --beta-end cannot be used with --resume: the run's schedule is stored in its checkpoint"
            );
        }
        Ok(())
    }

    fn options(&self) -> Result<job::TrainOptions> {
        let config = TrainConfig {
            data: self.data.clone(),
            unet: self.unet()?,
            autoencoder: self.autoencoder.clone(),
            snr_gamma: self.snr_gamma,
            schedule: self.schedule.config(self.beta_schedule),
            seed: self.seed,
            data_seed: self.data_seed,
            steps: self.steps.unwrap_or(TrainConfig::default().steps),
            batch_size: self.batch_size,
            lr: self.lr,
            cond_drop: self.cond_drop,
            checkpoint_every: self.checkpoint_every.unwrap_or(DEFAULT_CHECKPOINT_EVERY),
            preview_steps: self.preview_steps.unwrap_or(DEFAULT_PREVIEW_STEPS),
            ..Default::default()
        };
        Ok(job::TrainOptions {
            config,
            out: self.out.clone(),
            run_dir: job::run_dir_for(&self.out, self.run_dir.as_deref(), self.resume.as_deref()),
            resume: self.resume.clone(),
            steps_override: self.steps,
            overrides: RunOverrides {
                checkpoint_every: self.checkpoint_every,
                preview_steps: self.preview_steps,
            },
            force: self.force,
            command_line: super::command_line(),
        })
    }
}

/// A flag the first Ctrl-C (or SIGTERM, SIGHUP) sets, so a training run saves a checkpoint
/// and stops cleanly.
pub fn stop_on_signal() -> Arc<AtomicBool> {
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    let _ = ctrlc::set_handler(move || flag.store(true, Ordering::SeqCst));
    stop
}

/// The one line a training command prints at its end; `what` names the file it wrote.
pub fn print_outcome(o: &job::TrainOutcome, what: &str, out: &std::path::Path) -> Result<()> {
    writeln!(
        std::io::stdout().lock(),
        "{} at step {}/{} (loss {:.5}, {:.1} min of training in all); {what} {}, checkpoint {}",
        if o.interrupted { "stopped" } else { "finished" },
        o.step,
        o.total_steps,
        o.last_loss,
        o.elapsed_s / 60.0,
        out.display(),
        o.checkpoint.display()
    )?;
    Ok(())
}

pub fn run(args: &TrainArgs, ctx: &Context) -> Result<()> {
    args.check_resume()?;
    let device = ctx.device(&args.device)?;
    let opts = args.options()?;
    let outcome = job::run(&opts, &device, &ctx.bars, &stop_on_signal())?;
    print_outcome(&outcome, "model", &args.out)
}

#[derive(Subcommand)]
pub enum DataCommand {
    /// The procedural shapes dataset: images named index_colour_shape.png plus preview.png.
    Shapes(ShapesArgs),
    /// Emoji scenes: images, captions.jsonl (caption, relation, object boxes) and preview.png;
    /// `--held-out` lists the noun pairs training never shows together.
    Emoji(EmojiArgs),
}

#[derive(Args)]
pub struct EmojiArgs {
    /// How many scenes.
    #[arg(long, default_value_t = data::DEFAULT_COUNT)]
    count: usize,
    /// Output folder; it must be empty or new unless --force.
    #[arg(long, required_unless_present = "held_out")]
    out: Option<PathBuf>,
    /// Dataset seed (the trainer's default).
    #[arg(long, default_value_t = TrainConfig::default().data_seed)]
    seed: u64,
    /// Write into a non-empty folder.
    #[arg(long)]
    force: bool,
    /// Print the held-out pairs instead of writing scenes.
    #[arg(long, conflicts_with_all = ["out", "count", "force"])]
    held_out: bool,
}

#[derive(Args)]
pub struct ShapesArgs {
    /// How many images.
    #[arg(long, default_value_t = data::DEFAULT_COUNT)]
    count: usize,
    /// Output folder; it must be empty or new unless --force.
    #[arg(long)]
    out: PathBuf,
    /// Dataset seed (the trainer's default).
    #[arg(long, default_value_t = TrainConfig::default().data_seed)]
    seed: u64,
    /// Write into a non-empty folder.
    #[arg(long)]
    force: bool,
}

pub fn run_data(cmd: &DataCommand, ctx: &Context) -> Result<()> {
    match cmd {
        DataCommand::Shapes(args) => {
            let n = data::write_shapes(args.seed, args.count, &args.out, args.force, &ctx.bars)?;
            let images = diffuse::jobs::count(n as u64, "image");
            println!("wrote {images} and preview.png to {}", args.out.display());
        }
        DataCommand::Emoji(args) => match &args.out {
            Some(out) if !args.held_out => {
                let n = data::write_emoji(args.seed, args.count, out, args.force, &ctx.bars)?;
                println!(
                    "wrote {}, captions.jsonl and preview.png to {}",
                    diffuse::jobs::count(n as u64, "scene"),
                    out.display()
                );
            }
            _ => print!("{}", data::held_out_text()),
        },
    }
    Ok(())
}
