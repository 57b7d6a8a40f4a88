//! Command-line interface: clap definitions, indicatif progress bars, and calls into the
//! library. Errors print as one line on stderr and exit with status 1 (2 for bad usage).

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Mutex;

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use diffuse::device::{self, DeviceChoice};
use diffuse::forward::NoiseMode;
use diffuse::jobs::generate;
use diffuse::jobs::noise::{self, FrameChoice, NoiseOptions};
use diffuse::load::{LoadOptions, Size, DEFAULT_MAX_SIDE};
use diffuse::progress::Progress;
use diffuse::schedule::{BetaSchedule, NoiseSchedule, ScheduleConfig};
use diffuse::{bench, fsutil, plot};

#[derive(Parser)]
#[command(
    name = "diffuse",
    version,
    about = "Diffusion models made visible: watch noise become an image, and an image become noise."
)]
struct Cli {
    /// Hide progress bars and notes.
    #[arg(long, short, global = true)]
    quiet: bool,

    /// Where tensors live: auto, cpu, cuda or metal.
    #[arg(long, global = true, default_value = "auto", value_parser = parse_device)]
    device: DeviceChoice,

    /// CPU threads for tensor math and encoding (default: one per core).
    #[arg(long, global = true)]
    threads: Option<usize>,

    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Print or plot a noise schedule (β_t, ᾱ_t) exactly as diffusers computes it.
    Schedule(ScheduleArgs),
    /// Add noise to a picture along a schedule: frames, a GIF and a contact strip.
    Noise(NoiseArgs),
    /// Measure the cost of diffusion steps: forward noising, frame output, the denoiser.
    Bench(BenchArgs),
    /// Train the denoiser; writes the EMA weights and a run folder (log, plots, checkpoint).
    Train(TrainArgs),
    /// Write training data to look at.
    #[command(subcommand)]
    Data(DataCommand),
    /// Judge a model's samples for every prompt (or, with --self-test, the judge itself).
    Eval(EvalArgs),
    /// Turn noise into images for a prompt, frame by frame (reverse diffusion).
    Generate(GenerateArgs),
    /// SDEdit: noise a picture part-way, then denoise it towards a prompt.
    Img2img(Img2ImgArgs),
}

#[derive(Args)]
struct Img2ImgArgs {
    /// The starting picture (resized to the model's resolution).
    #[arg(long)]
    image: PathBuf,
    /// How much of the schedule to redo: 0 keeps the picture, 1 starts from pure noise.
    #[arg(long, default_value_t = 0.6, allow_hyphen_values = true)]
    strength: f64,
    #[command(flatten)]
    generate: GenerateArgs,
}

#[derive(Args)]
struct GenerateArgs {
    /// What to draw, e.g. "a red circle", "blue", "triangle" or "" (unconditional).
    #[arg(long, allow_hyphen_values = true)]
    prompt: String,
    /// Replaces the unconditional branch of guidance, e.g. "red".
    #[arg(long)]
    negative_prompt: Option<String>,
    /// Images to generate side by side.
    #[arg(long, default_value_t = 4)]
    num_images: usize,
    /// ddpm, ddim or dpm++2m (default measured best with `diffuse eval`: see README).
    #[arg(long, default_value_t = generate::DEFAULT_SAMPLER, value_parser = parse_sampler)]
    sampler: diffuse::sampler::SamplerKind,
    /// Denoising steps.
    #[arg(long, default_value_t = generate::DEFAULT_STEPS)]
    steps: usize,
    /// DDIM's η (0 = deterministic).
    #[arg(long, default_value_t = 0.0, allow_hyphen_values = true)]
    eta: f64,
    /// leading, trailing or linspace (default: the sampler's diffusers default).
    #[arg(long, value_parser = parse_spacing)]
    timestep_spacing: Option<diffuse::sampler::TimestepSpacing>,
    /// Classifier-free guidance scale (1 = no guidance).
    #[arg(long, default_value_t = generate::DEFAULT_GUIDANCE, allow_hyphen_values = true)]
    guidance: f64,
    /// Turn off dynamic thresholding of the x0 prediction (diffusers' `thresholding`, on by
    /// default as diffusers recommends for pixel-space models); DDPM and DDIM then clip x0.
    #[arg(long)]
    no_thresholding: bool,
    /// Seed of the noise (default: a random seed, printed and recorded).
    #[arg(long)]
    seed: Option<u64>,
    /// Output folder (default: out/<prompt>-seed<seed>).
    #[arg(long)]
    out: Option<PathBuf>,
    /// `all`, or about N evenly chosen frames.
    #[arg(long, default_value = "all")]
    frames: String,
    /// Leave out the row of x0 predictions.
    #[arg(long)]
    no_x0: bool,
    /// Nearest-neighbour upscaling of frames and grid (default: frames at least 256 px wide).
    #[arg(long)]
    scale: Option<u32>,
    /// GIF frames per second.
    #[arg(long, default_value_t = 10.0)]
    fps: f64,
    /// Model file (default: the built-in model).
    #[arg(long)]
    model: Option<PathBuf>,
    /// Also write trajectory.safetensors (x_t and x0_pred at every step).
    #[arg(long)]
    save_tensors: bool,
    /// Write into a non-empty output folder.
    #[arg(long)]
    force: bool,
    /// Print run.json's content on stdout.
    #[arg(long)]
    json: bool,
}

fn parse_sampler(s: &str) -> Result<diffuse::sampler::SamplerKind, String> {
    s.parse().map_err(|e: diffuse::Error| e.to_string())
}

fn parse_spacing(s: &str) -> Result<diffuse::sampler::TimestepSpacing, String> {
    s.parse().map_err(|e: diffuse::Error| e.to_string())
}

#[derive(Args)]
struct EvalArgs {
    /// Model file (default: the built-in model).
    #[arg(long)]
    model: Option<PathBuf>,
    /// Samples per (colour, shape) prompt.
    #[arg(long, default_value_t = 8)]
    samples_per_prompt: usize,
    /// ddpm, ddim or dpm++2m (default: generate's default).
    #[arg(long, default_value_t = generate::DEFAULT_SAMPLER, value_parser = parse_sampler)]
    sampler: diffuse::sampler::SamplerKind,
    /// Sampling steps (1000 with DDPM is the full chain; default: generate's default).
    #[arg(long, default_value_t = generate::DEFAULT_STEPS)]
    steps: usize,
    /// Classifier-free guidance scale (default: generate's default).
    #[arg(long, default_value_t = generate::DEFAULT_GUIDANCE, allow_hyphen_values = true)]
    guidance: f64,
    /// Turn off dynamic thresholding of the x0 prediction (diffusers' `thresholding`, on by
    /// default as diffusers recommends for pixel-space models); DDPM and DDIM then clip x0.
    #[arg(long)]
    no_thresholding: bool,
    /// Seed of the sampling noise.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Judge fresh dataset images under added noise instead of a model's samples.
    #[arg(long)]
    self_test: bool,
    /// Measure accuracy against step count for each sampler; print a table and plot it here.
    #[arg(long, value_name = "PLOT.png")]
    sweep: Option<PathBuf>,
    /// Also save every sample as one labelled picture here (6×6 for one sample per prompt).
    #[arg(long, value_name = "GRID.png")]
    grid: Option<PathBuf>,
    /// Step counts for --sweep.
    #[arg(long, value_delimiter = ',', default_value = "5,10,20,50")]
    sweep_steps: Vec<usize>,
    /// Overwrite an existing sweep plot or grid.
    #[arg(long)]
    force: bool,
    /// Print one JSON object.
    #[arg(long)]
    json: bool,
}

#[derive(Subcommand)]
enum DataCommand {
    /// The procedural shapes dataset: images named index_colour_shape.png plus preview.png.
    Shapes(ShapesArgs),
}

#[derive(Args)]
struct ShapesArgs {
    /// How many images.
    #[arg(long, default_value_t = 64)]
    count: usize,
    /// Output folder; it must be empty or new unless --force.
    #[arg(long)]
    out: PathBuf,
    /// Dataset seed (the trainer's default is 1).
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Write into a non-empty folder.
    #[arg(long)]
    force: bool,
}

#[derive(Args)]
struct TrainArgs {
    /// Training data: `shapes` (the procedural shapes dataset) or a folder of pictures
    /// (class subfolders: the folder names become the prompts; flat: unconditional).
    #[arg(long, default_value = "shapes")]
    data: String,
    /// Model file to write (EMA weights + config in the safetensors metadata).
    #[arg(long, value_name = "FILE.safetensors")]
    out: PathBuf,
    /// Total optimisation steps.
    /// (Default 10000 for a new run; with --resume, the checkpoint's unless given.)
    #[arg(long)]
    steps: Option<u64>,
    /// Images per step.
    #[arg(long, default_value_t = 64)]
    batch_size: usize,
    /// Peak learning rate (warm-up, then cosine decay).
    #[arg(long, default_value_t = 2e-3)]
    lr: f64,
    /// Seed of the weights and of the trainer's noise.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Seed of the shapes dataset.
    #[arg(long, default_value_t = 1)]
    data_seed: u64,
    /// Width of the UNet's first level.
    #[arg(long, default_value_t = diffuse::unet::UNetConfig::default().base_channels)]
    base_channels: usize,
    /// What the network predicts: epsilon or v_prediction (diffusers' `prediction_type`).
    #[arg(long, default_value = "epsilon", value_parser = ["epsilon", "v_prediction"])]
    prediction_type: String,
    /// Probability of dropping the whole prompt (for classifier-free guidance).
    #[arg(long, default_value_t = 0.1)]
    cond_drop: f64,
    /// linear, scaled-linear, cosine or sigmoid.
    #[arg(long, default_value = "linear", value_parser = parse_schedule)]
    beta_schedule: BetaSchedule,
    #[command(flatten)]
    schedule: ScheduleFlags,
    /// Folder for train_log.csv, loss.png, previews and checkpoint.safetensors
    /// (default: runs/<model file stem>).
    #[arg(long)]
    run_dir: Option<PathBuf>,
    /// Continue exactly from this checkpoint (its config wins; --steps may extend the run).
    #[arg(long, value_name = "CKPT")]
    resume: Option<PathBuf>,
    /// Checkpoint, plot and preview every N steps.
    #[arg(long, default_value_t = 500)]
    checkpoint_every: u64,
    /// DDPM steps for the preview grids.
    #[arg(long, default_value_t = 50)]
    preview_steps: usize,
    /// Overwrite an existing model file.
    #[arg(long)]
    force: bool,
}

#[derive(Args)]
struct BenchArgs {
    /// Fewer cases and runs: the whole suite in under a minute.
    #[arg(long)]
    quick: bool,
    /// Print one JSON object instead of tables.
    #[arg(long)]
    json: bool,
    /// Model for the end-to-end figures (default: the built-in model).
    #[arg(long)]
    model: Option<PathBuf>,
    /// Only the denoiser (forward at batch 1/16/64 and the training step), as
    /// benches/pytorch_reference.py compares it.
    #[arg(long)]
    model_only: bool,
    /// With --model-only: width of the benchmarked UNet's first level.
    #[arg(long, default_value_t = diffuse::unet::UNetConfig::default().base_channels)]
    base_channels: usize,
    /// Write weights, config and a fixed input/output pair for benches/pytorch_reference.py.
    #[arg(long, value_name = "DIR")]
    export_parity: Option<PathBuf>,
}

fn parse_device(s: &str) -> Result<DeviceChoice, String> {
    s.parse().map_err(|e: diffuse::Error| e.to_string())
}

fn parse_schedule(s: &str) -> Result<BetaSchedule, String> {
    s.parse().map_err(|e: diffuse::Error| e.to_string())
}

fn parse_size(s: &str) -> Result<Size, String> {
    s.parse().map_err(|e: diffuse::Error| e.to_string())
}

/// Schedule flags shared by every command that uses one (diffusers' names and defaults).
#[derive(Args, Clone)]
struct ScheduleFlags {
    /// Number of training timesteps T (diffusers `num_train_timesteps`).
    #[arg(long, default_value_t = 1000)]
    train_timesteps: usize,
    /// β at t = 0 (diffusers `beta_start`).
    #[arg(long, default_value_t = 0.0001, allow_hyphen_values = true)]
    beta_start: f64,
    /// β at t = T-1 (diffusers `beta_end`).
    #[arg(long, default_value_t = 0.02, allow_hyphen_values = true)]
    beta_end: f64,
}

impl ScheduleFlags {
    fn config(&self, beta_schedule: BetaSchedule) -> ScheduleConfig {
        ScheduleConfig {
            beta_schedule,
            train_timesteps: self.train_timesteps,
            beta_start: self.beta_start,
            beta_end: self.beta_end,
        }
    }
}

#[derive(Args)]
struct ScheduleArgs {
    /// linear, scaled-linear, cosine, sigmoid, or all (diffusers' names are accepted too).
    #[arg(long, default_value = "linear")]
    beta_schedule: String,
    #[command(flatten)]
    schedule: ScheduleFlags,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    json: bool,
    /// Also draw ᾱ_t and log-SNR against t into this PNG.
    #[arg(long, value_name = "FILE.png")]
    plot: Option<PathBuf>,
    /// Overwrite an existing plot file.
    #[arg(long)]
    force: bool,
}

#[derive(Args)]
struct NoiseArgs {
    /// The picture to diffuse (PNG, JPEG, GIF, BMP, WebP or TIFF).
    #[arg(long)]
    image: PathBuf,
    /// Output folder; it must be empty or new unless --force.
    #[arg(long)]
    out: PathBuf,
    /// linear, scaled-linear, cosine or sigmoid.
    #[arg(long, default_value = "linear", value_parser = parse_schedule)]
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
    /// Number of frames, evenly spaced from t = 0 to T-1.
    #[arg(long, default_value_t = noise::DEFAULT_FRAMES)]
    frames: usize,
    /// Run the Markov chain q(x_t | x_{t-1}) with fresh noise each step, instead of one ε.
    #[arg(long)]
    markov: bool,
    /// Seed of the noise.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// GIF frames per second.
    #[arg(long, default_value_t = noise::DEFAULT_FPS)]
    fps: f64,
    /// Scale the picture down when a side is longer than this.
    #[arg(long, default_value_t = DEFAULT_MAX_SIDE)]
    max_side: u32,
    /// Resize to exactly WIDTHxHEIGHT.
    #[arg(long, value_parser = parse_size)]
    size: Option<Size>,
    /// Also write trajectory.safetensors (x0, noise, x_t, timesteps).
    #[arg(long)]
    save_tensors: bool,
    /// Write into a non-empty output folder.
    #[arg(long)]
    force: bool,
    /// Print run.json's content on stdout.
    #[arg(long)]
    json: bool,
}

/// indicatif bars on stderr; hidden with --quiet or when stderr is not a terminal.
struct Bars {
    quiet: bool,
    visible: bool,
    bar: Mutex<Option<ProgressBar>>,
}

impl Bars {
    fn new(quiet: bool) -> Self {
        Self {
            quiet,
            visible: !quiet && std::io::stderr().is_terminal(),
            bar: Mutex::new(None),
        }
    }
}

impl Progress for Bars {
    fn stage(&self, name: &str, total: u64) {
        let bar = if self.visible {
            let b = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
            b.set_style(
                ProgressStyle::with_template(
                    "{msg:>16} [{bar:30}] {pos}/{len} {elapsed} eta {eta}",
                )
                .expect("valid template")
                .progress_chars("=> "),
            );
            b
        } else {
            ProgressBar::hidden()
        };
        bar.set_prefix(name.to_string());
        *self.bar.lock().expect("bar lock") = Some(bar);
    }

    fn advance(&self, n: u64) {
        if let Some(b) = self.bar.lock().expect("bar lock").as_ref() {
            b.inc(n);
        }
    }

    fn note(&self, msg: &str) {
        if !self.quiet {
            eprintln!("note: {msg}");
        }
    }

    fn status(&self, msg: &str) {
        if let Some(b) = self.bar.lock().expect("bar lock").as_ref() {
            b.set_message(msg.to_string());
        }
    }

    fn finish(&self) {
        if let Some(b) = self.bar.lock().expect("bar lock").take() {
            b.finish_and_clear();
        }
    }
}

fn resolve_device(choice: DeviceChoice, bars: &Bars) -> Result<candle_core::Device> {
    let resolved = device::resolve(choice)?;
    // The fallback hint is for people at a terminal; scripts see only errors and results.
    if let Some(hint) = resolved.hint.filter(|_| bars.visible) {
        bars.note(&hint);
    }
    Ok(resolved.device)
}

fn run_schedule(args: &ScheduleArgs) -> Result<()> {
    let kinds: Vec<BetaSchedule> = if args.beta_schedule == "all" {
        BetaSchedule::ALL.to_vec()
    } else {
        vec![args.beta_schedule.parse()?]
    };
    let schedules = kinds
        .iter()
        .map(|&k| NoiseSchedule::new(args.schedule.config(k)))
        .collect::<diffuse::Result<Vec<_>>>()?;
    if let Some(path) = &args.plot {
        fsutil::check_overwrite(path, args.force)?;
        plot::save_schedule_plot(&schedules, path)?;
    }
    let mut out = std::io::stdout().lock();
    if args.json {
        let objects: Vec<serde_json::Value> = schedules
            .iter()
            .map(|s| {
                serde_json::json!({
                    "beta_schedule": s.config.beta_schedule.name(),
                    "train_timesteps": s.len(),
                    "beta_start": s.config.beta_start,
                    "beta_end": s.config.beta_end,
                    "betas": s.betas,
                    "alphas_cumprod": s.alphas_cumprod,
                })
            })
            .collect();
        let value = match objects.len() {
            1 => objects.into_iter().next().expect("one"),
            _ => serde_json::json!({ "schedules": objects }),
        };
        writeln!(out, "{value}")?;
        return Ok(());
    }
    for s in &schedules {
        let t_total = s.len();
        writeln!(
            out,
            "{} schedule, T = {t_total} (beta_start {}, beta_end {})",
            s.config.beta_schedule, s.config.beta_start, s.config.beta_end
        )?;
        writeln!(
            out,
            "{:>6}  {:>12}  {:>12}  {:>10}  {:>10}  {:>9}",
            "t", "beta_t", "alphabar_t", "sqrt(ab)", "sqrt(1-ab)", "log SNR"
        )?;
        let mut rows: Vec<usize> = (0..=10).map(|i| i * (t_total - 1) / 10).collect();
        rows.dedup();
        for t in rows {
            let ab = s.alphas_cumprod[t];
            writeln!(
                out,
                "{t:>6}  {:>12.6e}  {:>12.6e}  {:>10.6}  {:>10.6}  {:>9.3}",
                s.betas[t],
                ab,
                ab.sqrt(),
                (1.0 - ab).sqrt(),
                s.log_snr(t)
            )?;
        }
        writeln!(out)?;
    }
    if let Some(path) = &args.plot {
        writeln!(out, "plot written to {}", path.display())?;
    }
    Ok(())
}

fn run_noise(args: &NoiseArgs, device: &candle_core::Device, bars: &Bars) -> Result<()> {
    let opts = NoiseOptions {
        image: args.image.clone(),
        out: args.out.clone(),
        schedule: args.schedule.config(args.beta_schedule),
        load: LoadOptions {
            max_side: args.max_side,
            size: args.size,
        },
        frames: match &args.timesteps {
            Some(ts) => FrameChoice::List(ts.clone()),
            None => FrameChoice::Even(args.frames),
        },
        mode: if args.markov {
            NoiseMode::Markov
        } else {
            NoiseMode::Shared
        },
        seed: args.seed,
        fps: args.fps,
        save_tensors: args.save_tensors,
        force: args.force,
    };
    let report = noise::run(&opts, device, bars)?;
    let mut out = std::io::stdout().lock();
    if args.json {
        writeln!(out, "{}", serde_json::to_string(&report)?)?;
    } else {
        writeln!(
            out,
            "wrote {} frames (t = {}..{}), noising.gif and strip.png to {} in {:.2} s",
            report.frame_count,
            report.timesteps.first().copied().unwrap_or(0),
            report.timesteps.last().copied().unwrap_or(0),
            report.out.display(),
            report.timings.total_ms / 1e3
        )?;
    }
    Ok(())
}

fn run_bench(args: &BenchArgs, device: &candle_core::Device, bars: &Bars) -> Result<()> {
    if args.model_only || args.export_parity.is_some() {
        return run_model_bench(args, device, bars);
    }
    let (model, _, bytes) = diffuse::embedded::load_named(args.model.as_deref(), device)?;
    let opts = bench::suite::SuiteOptions {
        quick: args.quick,
        train_batch: diffuse::train::TrainConfig::default().batch_size,
        scratch: std::env::temp_dir().join(format!("diffuse-bench-{}", std::process::id())),
        exe: std::env::current_exe().ok(),
    };
    let report = bench::suite::run(&model, &bytes, &opts, device, bars)?;
    let mut out = std::io::stdout().lock();
    if args.json {
        writeln!(out, "{}", serde_json::to_string(&report)?)?;
        return Ok(());
    }
    write!(out, "{}", bench_table(&report))?;
    Ok(())
}

/// A duration in the unit that suits it.
fn human_ms(ms: f64) -> String {
    if ms >= 1000.0 {
        format!("{:.2} s", ms / 1000.0)
    } else if ms >= 1.0 {
        format!("{ms:.1} ms")
    } else {
        format!("{:.1} µs", ms * 1000.0)
    }
}

/// A rate with a k/M prefix.
fn human_rate(v: f64) -> String {
    if v >= 1e6 {
        format!("{:.2} M", v / 1e6)
    } else if v >= 1e3 {
        format!("{:.1} k", v / 1e3)
    } else {
        format!("{v:.1}")
    }
}

/// The `diffuse bench` table: a Markdown table, so it pastes into a README as it is.
fn bench_table(r: &bench::suite::SuiteReport) -> String {
    let m = &r.machine;
    let mut s = format!(
        "diffuse {} ({} build, features: {}) on {}, {} cores, {} threads, device {}, {}/{}\n",
        r.build.version,
        r.build.profile,
        if r.build.features.is_empty() {
            "none".to_string()
        } else {
            r.build.features.join(", ")
        },
        m.cpu,
        m.cores,
        m.threads,
        m.device,
        m.os,
        m.arch
    );
    s += &format!(
        "denoiser {} parameters, {:.3} GFLOP per image; GEMM peak {:.1} GFLOP/s; {} in {:.0} s\n\n",
        r.parameters,
        r.gflop_per_image,
        r.peak_gflops,
        if r.quick { "quick run" } else { "full run" },
        r.seconds
    );
    s += "| part | case | median | min .. max | runs | throughput | GFLOP/s (of peak) | rayon speed-up | peak heap |\n";
    s += "|---|---|---:|---:|---:|---:|---:|---:|---:|\n";
    for row in &r.rows {
        let t = &row.timing;
        s += &format!(
            "| {} | {} | {} | {} .. {} | {} | {} {} | {} | {} | {} |\n",
            row.part,
            row.case,
            human_ms(t.median_ms),
            human_ms(t.min_ms),
            human_ms(t.max_ms),
            t.runs,
            human_rate(row.rate),
            row.unit,
            match (row.gflops, row.peak_fraction) {
                (Some(g), Some(f)) => format!("{g:.1} ({:.0}%)", 100.0 * f),
                _ => String::new(),
            },
            row.speedup.map_or(String::new(), |x| format!("{x:.2}x")),
            row.peak_heap_mib
                .map_or("n/a".to_string(), |mb| format!("{mb:.1} MiB")),
        );
    }
    s
}

/// The denoiser-only report (`--model-only`), which benches/pytorch_reference.py reads.
fn run_model_bench(args: &BenchArgs, device: &candle_core::Device, bars: &Bars) -> Result<()> {
    let config = diffuse::unet::UNetConfig {
        base_channels: args.base_channels,
        ..Default::default()
    };
    if let Some(dir) = &args.export_parity {
        bench::export_parity(&config, dir)?;
        bars.note(&format!("parity files written to {}", dir.display()));
    }
    let mut out = std::io::stdout().lock();
    let opts = bench::ModelBenchOptions {
        config,
        runs: if args.quick { 3 } else { 7 },
        ..Default::default()
    };
    let report = bench::bench_model(&opts, device, bars)?;
    if args.json {
        let json = serde_json::json!({
            "diffuse_version": env!("CARGO_PKG_VERSION"),
            "features": device::compiled_features(),
            "model": report,
        });
        writeln!(out, "{json}")?;
        return Ok(());
    }
    writeln!(
        out,
        "denoiser: {} parameters, {:.3} GFLOP per image, {} threads on {}, GEMM peak {:.1} GFLOP/s",
        report.parameters,
        report.gflop_per_image,
        report.threads,
        report.device,
        report.peak_gflops
    )?;
    writeln!(
        out,
        "  {:<22} {:>10} {:>18} {:>10} {:>8}",
        "", "median ms", "min..max ms", "GFLOP/s", "of peak"
    )?;
    let train = &report.train;
    let rows = report
        .forward
        .iter()
        .map(|r| {
            (
                format!("forward, batch {}", r.batch),
                r.timing,
                r.gflops,
                r.peak_fraction,
            )
        })
        .chain(std::iter::once((
            format!("train step, batch {}", train.batch),
            train.timing,
            train.gflops,
            train.peak_fraction,
        )));
    for (name, t, gflops, frac) in rows {
        writeln!(
            out,
            "  {:<22} {:>10.1} {:>18} {:>10.1} {:>7.0}%",
            name,
            t.median_ms,
            format!("{:.1}..{:.1}", t.min_ms, t.max_ms),
            gflops,
            100.0 * frac
        )?;
    }
    Ok(())
}

fn run_train(args: &TrainArgs, device: &candle_core::Device, bars: &Bars) -> Result<()> {
    use diffuse::jobs::train::{self, TrainOptions};
    use diffuse::train::TrainConfig;
    let unet = diffuse::unet::UNetConfig {
        base_channels: args.base_channels,
        prediction: if args.prediction_type == "v_prediction" {
            diffuse::unet::Prediction::VPrediction
        } else {
            diffuse::unet::Prediction::Epsilon
        },
        ..Default::default()
    };
    let config = TrainConfig {
        data: if args.data == "shapes" {
            diffuse::train::DataSource::Shapes
        } else {
            diffuse::train::DataSource::Folder(PathBuf::from(&args.data))
        },
        unet,
        schedule: args.schedule.config(args.beta_schedule),
        seed: args.seed,
        data_seed: args.data_seed,
        steps: args.steps.unwrap_or(TrainConfig::default().steps),
        batch_size: args.batch_size,
        lr: args.lr,
        cond_drop: args.cond_drop,
        ..Default::default()
    };
    let run_dir = args.run_dir.clone().unwrap_or_else(|| {
        let stem = args
            .out
            .file_stem()
            .map_or("run".into(), |s| s.to_string_lossy().into_owned());
        PathBuf::from("runs").join(stem)
    });
    let opts = TrainOptions {
        config,
        out: args.out.clone(),
        run_dir: run_dir.clone(),
        resume: args.resume.clone(),
        steps_override: args.steps,
        every: args.checkpoint_every,
        preview_steps: args.preview_steps,
        force: args.force,
        command_line: std::env::args().collect::<Vec<_>>().join(" "),
    };
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    {
        let stop = stop.clone();
        // First Ctrl-C: save a checkpoint and stop cleanly.
        let _ = ctrlc::set_handler(move || stop.store(true, std::sync::atomic::Ordering::SeqCst));
    }
    let outcome = train::run(&opts, device, bars, &stop)?;
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "{} at step {}/{} (loss {:.5}, {:.1} min of training in all); model {}, checkpoint {}",
        if outcome.interrupted {
            "stopped"
        } else {
            "finished"
        },
        outcome.step,
        outcome.total_steps,
        outcome.last_loss,
        outcome.elapsed_s / 60.0,
        args.out.display(),
        outcome.checkpoint.display()
    )?;
    Ok(())
}

fn run_eval(args: &EvalArgs, device: &candle_core::Device, bars: &Bars) -> Result<()> {
    use diffuse::jobs::eval;
    let mut out = std::io::stdout().lock();
    if args.self_test {
        let rows = eval::self_test(1000, 4242, &[0.0, 0.05, 0.1, 0.2, 0.3])?;
        if args.json {
            writeln!(out, "{}", serde_json::to_string(&rows)?)?;
            return Ok(());
        }
        writeln!(out, "judge on 1000 fresh dataset images (seed 4242)")?;
        writeln!(
            out,
            "{:>12} {:>8} {:>8} {:>8} {:>10}",
            "noise sigma", "colour", "shape", "both", "no object"
        )?;
        for r in rows {
            let t = &r.tally;
            writeln!(
                out,
                "{:>12.2} {:>7.1}% {:>7.1}% {:>7.1}% {:>10}",
                r.noise_sigma,
                100.0 * t.colour_accuracy(),
                100.0 * t.shape_accuracy(),
                100.0 * t.both_accuracy(),
                t.no_clear_object
            )?;
        }
        return Ok(());
    }
    let model = diffuse::embedded::load(args.model.as_deref(), device)?;
    let opts = eval::EvalOptions {
        samples_per_prompt: args.samples_per_prompt,
        sampler: args.sampler,
        steps: args.steps,
        guidance: args.guidance,
        thresholding: !args.no_thresholding,
        seed: args.seed,
    };
    if let Some(plot) = &args.sweep {
        fsutil::check_overwrite(plot, args.force)?;
        use diffuse::sampler::SamplerKind;
        let kinds = [
            SamplerKind::Ddpm,
            SamplerKind::Ddim,
            SamplerKind::DpmSolverPP2M,
        ];
        let points = eval::sweep(&model, &kinds, &args.sweep_steps, &opts, device, bars)?;
        eval::save_sweep_plot(&points, plot)?;
        if args.json {
            writeln!(out, "{}", serde_json::to_string(&points)?)?;
            return Ok(());
        }
        writeln!(
            out,
            "{:<10} {:>6} {:>8} {:>8} {:>8} {:>8}",
            "sampler", "steps", "colour", "shape", "both", "seconds"
        )?;
        for p in &points {
            writeln!(
                out,
                "{:<10} {:>6} {:>7.1}% {:>7.1}% {:>7.1}% {:>8.1}",
                p.sampler.to_string(),
                p.steps,
                100.0 * p.colour_accuracy,
                100.0 * p.shape_accuracy,
                100.0 * p.both_accuracy,
                p.seconds
            )?;
        }
        writeln!(out, "plot written to {}", plot.display())?;
        return Ok(());
    }
    if let Some(grid) = &args.grid {
        fsutil::check_overwrite(grid, args.force)?;
    }
    let report = eval::evaluate(&model, &opts, device, bars)?;
    if let Some(grid) = &args.grid {
        eval::save_grid(&report, grid)?;
        bars.note(&format!("samples written to {}", grid.display()));
    }
    if args.json {
        writeln!(out, "{}", serde_json::to_string(&report)?)?;
        return Ok(());
    }
    writeln!(
        out,
        "{} samples ({} per prompt), {} {} steps, guidance {}, seed {}: colour {:.1}%, shape {:.1}%, both {:.1}%, no clear object {} ({:.0} s)",
        report.total, report.samples_per_prompt, report.sampler, report.steps, report.guidance, report.seed,
        100.0 * report.colour_accuracy, 100.0 * report.shape_accuracy, 100.0 * report.both_accuracy,
        report.no_clear_object, report.seconds
    )?;
    writeln!(
        out,
        "{:<18} {:>8} {:>8} {:>8}",
        "prompt", "colour", "shape", "both"
    )?;
    for r in &report.prompts {
        writeln!(
            out,
            "{:<18} {:>7.0}% {:>7.0}% {:>7.0}%",
            r.prompt,
            100.0 * r.tally.colour_accuracy(),
            100.0 * r.tally.shape_accuracy(),
            100.0 * r.tally.both_accuracy()
        )?;
    }
    Ok(())
}

fn run_generate(
    args: &GenerateArgs,
    init: Option<(&std::path::Path, f64)>,
    device: &candle_core::Device,
    bars: &Bars,
) -> Result<()> {
    use diffuse::jobs::generate::{self, FrameCount, GenerateOptions};
    use diffuse::sampler::SamplerConfig;
    let seed = args.seed.unwrap_or_else(|| rand::random::<u64>() >> 11);
    let frames = match args.frames.as_str() {
        "all" => FrameCount::All,
        n => FrameCount::Some(
            n.parse()
                .map_err(|_| anyhow::anyhow!("--frames '{n}' is neither 'all' nor a number"))?,
        ),
    };
    let mut sampler = SamplerConfig {
        eta: args.eta,
        thresholding: !args.no_thresholding,
        ..SamplerConfig::new(args.sampler, args.steps)
    };
    if let Some(sp) = args.timestep_spacing {
        sampler.timestep_spacing = sp;
    }
    let out = args.out.clone().unwrap_or_else(|| {
        PathBuf::from("out").join(format!(
            "{}-seed{seed}",
            diffuse::prompt::slug(&args.prompt)
        ))
    });
    let (model, name, bytes) = diffuse::embedded::load_named(args.model.as_deref(), device)?;
    let init_image = match init {
        Some((path, strength)) => {
            let side = model.meta.unet.image_size as u32;
            let opts = LoadOptions {
                max_side: DEFAULT_MAX_SIDE,
                size: Some(Size {
                    width: side,
                    height: side,
                }),
            };
            Some((diffuse::load::load_image(path, &opts, device)?.x0, strength))
        }
        None => None,
    };
    let opts = GenerateOptions {
        init_image,
        prompt: args.prompt.clone(),
        negative_prompt: args.negative_prompt.clone(),
        num_images: args.num_images,
        sampler,
        guidance: args.guidance,
        seed,
        out,
        frames,
        x0_row: !args.no_x0,
        scale: args.scale,
        fps: args.fps,
        save_tensors: args.save_tensors,
        force: args.force,
    };
    let report = generate::run(&model, &name, &bytes, &opts, device, bars)?;
    let mut out = std::io::stdout().lock();
    if args.json {
        writeln!(out, "{}", serde_json::to_string(&report)?)?;
    } else {
        writeln!(
            out,
            "\"{}\": {} image(s), {} {} steps, guidance {}, seed {} -> {} ({} frames, {:.2} s sampling)",
            report.prompt, report.num_images, report.sampler.kind, report.timesteps.len(),
            report.guidance, report.seed, report.out.display(), report.frame_count, report.sampling_ms / 1e3
        )?;
    }
    Ok(())
}

fn run(cli: Cli) -> Result<()> {
    let bars = Bars::new(cli.quiet);
    if let Some(n) = cli.threads {
        if n == 0 {
            anyhow::bail!("--threads 0: need at least one thread");
        }
        // candle's own CPU kernels read the variable rayon reads.
        std::env::set_var("RAYON_NUM_THREADS", n.to_string());
        rayon::ThreadPoolBuilder::new()
            .num_threads(n)
            .build_global()
            .context("--threads")?;
    }
    match &cli.command {
        Command::Schedule(args) => run_schedule(args),
        Command::Noise(args) => {
            let device = resolve_device(cli.device, &bars)?;
            run_noise(args, &device, &bars).context("diffuse noise")
        }
        Command::Train(args) => {
            let device = resolve_device(cli.device, &bars)?;
            run_train(args, &device, &bars).context("diffuse train")
        }
        Command::Data(DataCommand::Shapes(args)) => {
            let n = diffuse::jobs::train::write_shapes(
                args.seed, args.count, &args.out, args.force, &bars,
            )
            .context("diffuse data shapes")?;
            println!("wrote {n} images and preview.png to {}", args.out.display());
            Ok(())
        }
        Command::Eval(args) => {
            let device = resolve_device(cli.device, &bars)?;
            run_eval(args, &device, &bars).context("diffuse eval")
        }
        Command::Generate(args) => {
            let device = resolve_device(cli.device, &bars)?;
            run_generate(args, None, &device, &bars).context("diffuse generate")
        }
        Command::Img2img(args) => {
            let device = resolve_device(cli.device, &bars)?;
            let init = Some((args.image.as_path(), args.strength));
            run_generate(&args.generate, init, &device, &bars).context("diffuse img2img")
        }
        Command::Bench(args) => {
            let device = resolve_device(cli.device, &bars)?;
            run_bench(args, &device, &bars).context("diffuse bench")
        }
    }
}

/// Parses the command line, runs it and maps errors to one line and an exit status.
pub fn main() -> ExitCode {
    diffuse::alloc::keep_freed_memory();
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            use clap::error::ErrorKind;
            if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion)
                || matches!(
                    e.kind(),
                    ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
                )
            {
                let _ = e.print();
                return ExitCode::from(if e.use_stderr() { 2 } else { 0 });
            }
            // One line: clap's first line names the flag and the reason.
            let rendered = e.render().to_string();
            let first = rendered
                .lines()
                .find(|l| !l.trim().is_empty())
                .unwrap_or("error");
            eprintln!("{first}");
            return ExitCode::from(2);
        }
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
            ExitCode::FAILURE
        }
    }
}
