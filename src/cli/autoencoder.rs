//! `diffuse train-autoencoder` (train Stable Diffusion's kind of autoencoder on the emoji
//! scenes, resumably, with a run folder) and `diffuse autoencode` (a picture through it, or
//! its PSNR and the judge's reads on unseen scenes).

use std::io::Write;
use std::path::PathBuf;

use anyhow::Result;
use clap::Args;

use diffuse::jobs::autoencoder::{self as job, AutoencoderTrainOptions};
use diffuse::jobs::train::run_dir_for;
use diffuse::vae::train::{load_autoencoder, AutoencoderTrainConfig};

use super::flags::DeviceFlag;
use super::train::{print_outcome, stop_on_signal};
use super::Context;

fn defaults() -> AutoencoderTrainConfig {
    AutoencoderTrainConfig::default()
}

#[derive(Args)]
pub struct TrainAutoencoderArgs {
    #[command(flatten)]
    device: DeviceFlag,
    /// Autoencoder file to write (EMA weights, config and measured scaling factor).
    #[arg(long, value_name = "FILE.safetensors")]
    out: PathBuf,
    /// Total optimisation steps (with --resume, the checkpoint's unless given).
    #[arg(long)]
    steps: Option<u64>,
    /// Scenes per step.
    #[arg(long, conflicts_with = "resume", default_value_t = defaults().batch_size)]
    batch_size: usize,
    /// Peak learning rate (warm-up, then cosine decay).
    #[arg(long, conflicts_with = "resume", allow_hyphen_values = true, default_value_t = defaults().lr)]
    lr: f64,
    /// Weight of the KL term.
    #[arg(long, conflicts_with = "resume", allow_hyphen_values = true, default_value_t = defaults().kl_weight)]
    kl_weight: f64,
    /// Weight of the edge term (L1 on the pictures' differences); 0 trains on L1 alone.
    #[arg(long, conflicts_with = "resume", allow_hyphen_values = true, default_value_t = defaults().edge_weight)]
    edge_weight: f64,
    /// Seed of the weights and of the posterior draws.
    #[arg(long, conflicts_with = "resume", default_value_t = defaults().seed)]
    seed: u64,
    /// Seed of the emoji scenes it trains on.
    #[arg(long, conflicts_with = "resume", default_value_t = defaults().data_seed)]
    data_seed: u64,
    /// Checkpoint, model file, loss plot and recon.png every N steps.
    #[arg(long, conflicts_with = "resume", default_value_t = defaults().checkpoint_every)]
    checkpoint_every: u64,
    /// Folder for train_log.csv, loss.png, recon.png and checkpoint.safetensors (default:
    /// runs/<model file stem>; with --resume, the checkpoint's folder).
    #[arg(long)]
    run_dir: Option<PathBuf>,
    /// Continue exactly from this checkpoint.
    #[arg(long, value_name = "CKPT")]
    resume: Option<PathBuf>,
    /// Overwrite an existing model file.
    #[arg(long)]
    force: bool,
}

impl TrainAutoencoderArgs {
    fn options(&self) -> AutoencoderTrainOptions {
        let mut config = AutoencoderTrainConfig {
            batch_size: self.batch_size,
            lr: self.lr,
            kl_weight: self.kl_weight,
            edge_weight: self.edge_weight,
            seed: self.seed,
            data_seed: self.data_seed,
            checkpoint_every: self.checkpoint_every,
            ..defaults()
        };
        if let Some(s) = self.steps {
            config.steps = s;
        }
        let run_dir = run_dir_for(&self.out, self.run_dir.as_deref(), self.resume.as_deref());
        AutoencoderTrainOptions {
            config,
            out: self.out.clone(),
            run_dir,
            resume: self.resume.clone(),
            steps_override: self.resume.as_ref().and(self.steps),
            force: self.force,

            command_line: super::command_line(),
        }
    }
}

pub fn run_train(args: &TrainAutoencoderArgs, ctx: &Context) -> Result<()> {
    let device = ctx.device(&args.device)?;
    let opts = args.options();
    let outcome = job::train(&opts, &device, &ctx.bars, &stop_on_signal())?;
    print_outcome(&outcome, "autoencoder", &args.out)
}

#[derive(Args)]
pub struct AutoencodeArgs {
    #[command(flatten)]
    device: DeviceFlag,
    /// The autoencoder file (from `diffuse train-autoencoder`).
    #[arg(long, value_name = "FILE.safetensors")]
    model: PathBuf,
    /// A picture to show going through it: picture, latent channels, reconstruction.
    #[arg(long, required_unless_present = "eval")]
    image: Option<PathBuf>,
    /// Where the picture goes.
    #[arg(long, default_value = "autoencode.png", requires = "image")]
    out: PathBuf,
    /// Measure PSNR and the judge's object reads on this many unseen scenes instead.
    #[arg(long, conflicts_with = "image", value_name = "SCENES")]
    eval: Option<usize>,
    /// Overwrite --out.
    #[arg(long)]
    force: bool,
    /// Print one JSON object.
    #[arg(long)]
    json: bool,
}

pub fn run_autoencode(args: &AutoencodeArgs, ctx: &Context) -> Result<()> {
    let device = ctx.device(&args.device)?;
    if let Some(n) = args.eval {
        if !(1..=job::MAX_EVAL_SCENES).contains(&n) {
            super::usage!("--eval {n} is out of range 1..={}", job::MAX_EVAL_SCENES);
        }
    }
    let (_, ae) = load_autoencoder(&args.model, &device)?;
    let mut out = std::io::stdout().lock();
    if let Some(n) = args.eval {
        let e = job::evaluate(&ae, n, &ctx.bars)?;
        if args.json {
            writeln!(out, "{}", serde_json::to_string(&e)?)?;
        } else {
            writeln!(
                out,
                "{} unseen scenes (seed {}): PSNR {:.2} dB; the judge reads {:.1} % of objects in the reconstructions, {:.1} % in the scenes ({:.1} % kept); scaling factor {:.4}; {:.0} s",
                e.scenes, e.data_seed, e.psnr_db, 100.0 * e.objects_reconstructions,
                100.0 * e.objects_scenes, 100.0 * e.objects_kept, e.scaling_factor, e.seconds
            )?;
        }
        return Ok(());
    }
    let image = args.image.as_deref().unwrap_or(std::path::Path::new(""));
    let r = job::autoencode(&ae, image, &args.out, args.force)?;
    if args.json {
        writeln!(out, "{}", serde_json::to_string(&r)?)?;
    } else {
        writeln!(
            out,
            "{} -> {}: latent {:?}, std {:.3}, reconstruction PSNR {:.2} dB",
            r.image, r.out, r.latent_shape, r.latent_std, r.psnr_db
        )?;
    }
    Ok(())
}
