//! Command-line interface: global flags, dispatch to one file per command, and the mapping of
//! errors to one line on stderr and an exit status:
//!
//! - 0: done (also `--help`, `--version`, and a closed pipe on stdout);
//! - 1: the run failed: a file that cannot be read or written, a broken model, a device that
//!   is not there, an output that exists without `--force`;
//! - 2: bad usage: clap's errors, and option values, names, prompt words and combinations
//!   that the library or a command refuses before any work ([`Usage`],
//!   `diffuse::Error::is_usage`).
//!
//! Each command file parses its flags, turns them into the library's typed options, calls
//! one job, and prints the result.

mod autoencoder;
mod bars;
mod bench;
mod compare;
mod eval;
mod export;
mod flags;
mod generate;
mod interpolate;
mod invert;
mod models;
mod nearest;
mod noise;
mod schedule;
mod serve;
mod train;

use std::process::ExitCode;

use anyhow::{Context as _, Result};
use clap::{Parser, Subcommand};

use diffuse::device;
use diffuse::progress::Progress;

use bars::Bars;

#[derive(Parser)]
#[command(
    name = "diffuse",
    version,
    about = "Diffusion models made visible: watch noise become an image, and an image become noise."
)]
struct Cli {
    /// Hide progress bars and notes.
    #[arg(long, short, global = true, help_heading = "Global options")]
    quiet: bool,

    /// CPU threads for tensor math and encoding (default: one per core).
    #[arg(long, global = true, help_heading = "Global options")]
    threads: Option<usize>,

    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Print or plot a noise schedule (β_t, ᾱ_t) exactly as diffusers computes it.
    Schedule(schedule::ScheduleArgs),
    /// Add noise to a picture along a schedule: frames, a GIF and a contact strip.
    Noise(noise::NoiseArgs),
    /// Measure the cost of diffusion steps: forward noising, frame output, the denoiser.
    Bench(bench::BenchArgs),
    /// Train the denoiser; writes the EMA weights and a run folder (log, plots, checkpoint).
    Train(train::TrainArgs),
    /// Train the autoencoder of latent diffusion on the emoji scenes (run folder, resumable).
    TrainAutoencoder(autoencoder::TrainAutoencoderArgs),
    /// A picture through an autoencoder (picture, latent channels, reconstruction), or its
    /// PSNR and the judge's reads on unseen scenes (--eval N).
    Autoencode(autoencoder::AutoencodeArgs),
    /// Write training data to look at.
    #[command(subcommand)]
    Data(train::DataCommand),
    /// Judge a model's samples for every prompt (or, with --self-test, the judge itself).
    Eval(eval::EvalArgs),
    /// Turn noise into images for a prompt, frame by frame (reverse diffusion).
    Generate(generate::GenerateCmd),
    /// SDEdit: noise a picture part-way, then denoise it towards a prompt.
    Img2img(generate::Img2ImgArgs),
    /// Repaint the masked part of a picture (white = repaint) so it fits the rest.
    Inpaint(generate::InpaintArgs),
    /// DDIM inversion: find the noise that deterministic DDIM turns back into a picture.
    Invert(invert::InvertArgs),
    /// Walk between two seeds and/or two prompts, one whole sample per frame.
    Interpolate(interpolate::InterpolateArgs),
    /// One prompt and noise, several guidance scales, samplers, step counts or seeds: a row each.
    Compare(compare::CompareArgs),
    /// Is it new? The training scenes nearest to a picture, over the model's exact training
    /// stream.
    Nearest(nearest::NearestArgs),
    /// List the built-in models: what they draw, their words, resolution and size.
    Models(models::ModelsArgs),
    /// Write a diffuse model as a diffusers UNet2DModel folder.
    Export(export::ExportArgs),
    /// A web playground on this machine: type a prompt, watch every step live.
    Serve(serve::ServeArgs),
}

/// What every command gets besides its own flags.
pub struct Context {
    pub bars: Bars,
}

impl Context {
    /// Resolves a command's `--device` (the one place a device is chosen, in
    /// [`diffuse::device`]).
    pub fn device(&self, flag: &flags::DeviceFlag) -> Result<candle_core::Device> {
        let resolved = device::resolve(flag.device)?;
        // The fallback hint is for people at a terminal; scripts see only errors and results.
        if let Some(hint) = resolved.hint.filter(|_| self.bars.visible) {
            self.bars.note(&hint);
        }
        Ok(resolved.device)
    }

    /// Loads `--model` on the command's `--device`.
    pub fn model(
        &self,
        device: &flags::DeviceFlag,
        model: &flags::ModelFlag,
    ) -> Result<diffuse::model::LoadedModel> {
        let device = self.device(device)?;
        Ok(diffuse::model::load(model.model.as_deref(), &device)?)
    }
}

/// The most threads `--threads` may ask for.
const MAX_THREADS: usize = 1024;

/// Sizes rayon's pool (and candle's, which reads the same variable) from `--threads`.
fn set_threads(threads: Option<usize>, quiet: bool) -> Result<()> {
    let Some(n) = threads else {
        return Ok(());
    };
    if n == 0 {
        usage!("--threads 0: need at least one thread");
    }
    if n > MAX_THREADS {
        usage!("--threads {n} is out of range 1..={MAX_THREADS}");
    }
    let cores = std::thread::available_parallelism().map_or(1, |c| c.get());
    if n > cores && !quiet {
        eprintln!("note: --threads {n} is more than the {cores} cores here; it will be slower, not faster");
    }
    std::env::set_var("RAYON_NUM_THREADS", n.to_string());
    rayon::ThreadPoolBuilder::new()
        .num_threads(n)
        .build_global()
        .context("--threads")
}

fn run(cli: Cli) -> Result<()> {
    set_threads(cli.threads, cli.quiet)?;
    let ctx = Context {
        bars: Bars::new(cli.quiet),
    };
    match &cli.command {
        Command::Schedule(args) => schedule::run(args),
        Command::Noise(args) => noise::run(args, &ctx).context("diffuse noise"),
        Command::Train(args) => train::run(args, &ctx).context("diffuse train"),
        Command::TrainAutoencoder(args) => {
            autoencoder::run_train(args, &ctx).context("diffuse train-autoencoder")
        }
        Command::Nearest(args) => nearest::run(args, &ctx).context("diffuse nearest"),
        Command::Autoencode(args) => {
            autoencoder::run_autoencode(args, &ctx).context("diffuse autoencode")
        }
        Command::Data(cmd) => train::run_data(cmd, &ctx).context("diffuse data"),
        Command::Eval(args) => eval::run(args, &ctx).context("diffuse eval"),
        Command::Generate(args) => generate::run(args, &ctx).context("diffuse generate"),
        Command::Img2img(args) => generate::run_img2img(args, &ctx).context("diffuse img2img"),
        Command::Inpaint(args) => generate::run_inpaint(args, &ctx).context("diffuse inpaint"),
        Command::Invert(args) => invert::run(args, &ctx).context("diffuse invert"),
        Command::Interpolate(args) => interpolate::run(args, &ctx).context("diffuse interpolate"),
        Command::Compare(args) => compare::run(args, &ctx).context("diffuse compare"),
        Command::Models(args) => models::run(args).context("diffuse models"),
        Command::Export(args) => export::run(args).context("diffuse export"),
        Command::Bench(args) => bench::run(args, &ctx).context("diffuse bench"),
        Command::Serve(args) => serve::run(args, &ctx).context("diffuse serve"),
    }
}

/// This invocation as one line, for a run folder's `commands.txt` (lossy, so a path that is not
/// UTF-8 is recorded rather than a panic).
pub fn command_line() -> String {
    std::env::args_os()
        .map(|a| a.to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join(" ")
}

/// A command's own refusal of its flags (exit status 2): `bail!`'s counterpart for usage.
#[derive(Debug)]
pub struct Usage(pub String);

impl std::fmt::Display for Usage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Usage {}

/// Returns a [`Usage`] error from the enclosing function, as `anyhow::bail!` does.
macro_rules! usage {
    ($($arg:tt)*) => {
        return Err($crate::cli::Usage(format!($($arg)*)).into())
    };
}
pub(crate) use usage;

/// Prints clap's help or version as it is, and a usage error as its first line.
fn usage_error(e: clap::Error) -> ExitCode {
    use clap::error::ErrorKind;
    if matches!(
        e.kind(),
        ErrorKind::DisplayHelp
            | ErrorKind::DisplayVersion
            | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
    ) {
        let _ = e.print();
        return ExitCode::from(if e.use_stderr() { 2 } else { 0 });
    }
    // One line: clap's first paragraph names the flag and the reason (some errors list the
    // flags on the lines after a colon).
    let rendered = e.render().to_string();
    let first: Vec<&str> = rendered
        .lines()
        .map(str::trim)
        .skip_while(|l| l.is_empty())
        .take_while(|l| !l.is_empty())
        .collect();
    let line = if first.is_empty() {
        "error".to_string()
    } else {
        first.join(" ")
    };
    eprintln!("{line}");
    ExitCode::from(2)
}

/// The command line's grammar. Every command takes negative numbers as values, so
/// `--seed -1` is an error about `--seed`, not an unexpected argument `-1`.
fn command() -> clap::Command {
    fn negatives(c: clap::Command) -> clap::Command {
        c.allow_negative_numbers(true).mut_subcommands(negatives)
    }
    negatives(<Cli as clap::CommandFactory>::command())
}

fn parse() -> std::result::Result<Cli, clap::Error> {
    let matches = command().try_get_matches()?;
    <Cli as clap::FromArgMatches>::from_arg_matches(&matches)
}

/// Parses the command line, runs it and maps errors to one line and an exit status.
pub fn main() -> ExitCode {
    diffuse::alloc::keep_freed_memory();
    let cli = match parse() {
        Ok(cli) => cli,
        Err(e) => return usage_error(e),
    };
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            if let Some(io) = e.downcast_ref::<std::io::Error>() {
                if io.kind() == std::io::ErrorKind::BrokenPipe {
                    return ExitCode::SUCCESS;
                }
            }
            // One line: candle appends a backtrace to its errors when RUST_BACKTRACE is set.
            let msg = format!("{e:#}");
            eprintln!("error: {}", msg.lines().next().unwrap_or("unknown error"));
            let usage = e.downcast_ref::<Usage>().is_some()
                || e.downcast_ref::<diffuse::Error>()
                    .is_some_and(diffuse::Error::is_usage);
            ExitCode::from(if usage { 2 } else { 1 })
        }
    }
}
