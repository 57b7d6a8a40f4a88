//! `diffuse nearest`: is a picture new? The scenes nearest to it among every scene the model
//! was trained on, as a picture, as text and with `--json`.

use std::io::Write;
use std::path::PathBuf;

use anyhow::Result;
use clap::Args;

use diffuse::jobs::copy_rate::{self, CopyRateOptions, MAX_COPY_RATE_SAMPLES};
use diffuse::jobs::count;
use diffuse::jobs::nearest::{self as job, NearestOptions};
use diffuse::nearest::MAX_TOP;

use super::flags::{DeviceFlag, ModelFlag};
use super::Context;

/// Neighbours shown by default.
const DEFAULT_TOP: usize = 4;

#[derive(Args)]
pub struct NearestArgs {
    #[command(flatten)]
    device: DeviceFlag,
    /// The picture to look up (resized to the model's resolution, as img2img does).
    #[arg(long, required_unless_present = "copy_rate")]
    image: Option<PathBuf>,
    /// Instead: measure the copy rate over N samples, each drawn for the caption of a fresh
    /// scene the model never saw, against those N fresh scenes (2..=4096).
    #[arg(long, value_name = "N", conflicts_with_all = ["image", "prompt", "top"])]
    copy_rate: Option<usize>,
    /// With --copy-rate: the seed of the samples' noise.
    #[arg(long)]
    seed: Option<u64>,
    #[command(flatten)]
    model: ModelFlag,
    /// How many nearest training scenes to show (1..=64).
    #[arg(long, default_value_t = DEFAULT_TOP)]
    top: usize,
    /// The picture to write: the query next to its nearest training scenes [default:
    /// nearest.png], or with --copy-rate the distance distributions [default: copy-rate.png].
    #[arg(long, value_name = "FILE.png")]
    out: Option<PathBuf>,
    /// The prompt the picture was drawn for; a held-out pair is named as such.
    #[arg(long)]
    prompt: Option<String>,
    /// Search the pictures of this folder (prepared as `train --data FOLDER` prepares them)
    /// instead of the model's recorded training stream: for a model trained on a folder.
    #[arg(long, value_name = "FOLDER", conflicts_with = "copy_rate")]
    data: Option<PathBuf>,
    /// Overwrite an existing picture.
    #[arg(long)]
    force: bool,
    /// Print one JSON object.
    #[arg(long)]
    json: bool,
}

pub fn run(args: &NearestArgs, ctx: &Context) -> Result<()> {
    if args.top == 0 || args.top > MAX_TOP {
        super::usage!("--top {} is out of range 1..={MAX_TOP}", args.top);
    }
    if let Some(n) = args.copy_rate {
        return copy_rate(args, n, ctx);
    }
    if args.seed.is_some() {
        super::usage!("--seed sets the samples' noise of --copy-rate; a lookup draws nothing");
    }
    let model = ctx.model(&args.device, &args.model)?;
    let opts = NearestOptions {
        image: args.image.clone().unwrap_or_default(),
        top: args.top,
        out: args.out.clone().unwrap_or_else(|| "nearest.png".into()),
        force: args.force,
        prompt: args.prompt.clone(),
        folder: args.data.clone(),
    };
    let report = job::run(&model, &opts, &ctx.bars)?;
    let mut out = std::io::stdout().lock();
    if args.json {
        writeln!(out, "{}", serde_json::to_string(&report)?)?;
        return Ok(());
    }
    let source = match (&report.stream, &report.folder) {
        (Some(s), _) => format!(
            "{} of {} (data seed {}, {} of {})",
            count(report.searched, "training scene"),
            report.model,
            s.data_seed,
            count(s.steps, "step"),
            s.batch_size
        ),
        (None, folder) => format!(
            "{} of {}",
            count(report.searched, "picture"),
            folder
                .as_deref()
                .unwrap_or(std::path::Path::new(""))
                .display()
        ),
    };
    let (image, seconds) = (report.image.display(), report.seconds);
    writeln!(out, "{image}: nearest of {source}, in {seconds:.1} s:")?;
    for n in &report.neighbours {
        let step = n.step.map(|s| format!(" (step {s})")).unwrap_or_default();
        let (d, i, c) = (n.distance, n.index, &n.caption);
        writeln!(out, "  {d:.4}  scene {i}{step}: {c}")?;
    }
    if let Some(note) = &report.held_out {
        writeln!(out, "{note}")?;
    }
    writeln!(
        out,
        "distance: {}; picture: {}",
        report.distance,
        report.out.display()
    )?;
    Ok(())
}

/// `--copy-rate N`: the measurement, as text or JSON.
fn copy_rate(args: &NearestArgs, samples: usize, ctx: &Context) -> Result<()> {
    let range = 2..=MAX_COPY_RATE_SAMPLES;
    if !range.contains(&samples) {
        super::usage!("--copy-rate {samples} is out of range 2..={MAX_COPY_RATE_SAMPLES}");
    }
    let model = ctx.model(&args.device, &args.model)?;
    let opts = CopyRateOptions {
        samples,
        seed: args.seed.unwrap_or(0),
        out: args.out.clone().unwrap_or_else(|| "copy-rate.png".into()),
        force: args.force,
    };
    let r = copy_rate::run(&model, &opts, &ctx.bars)?;
    let mut out = std::io::stdout().lock();
    if args.json {
        writeln!(out, "{}", serde_json::to_string(&r)?)?;
        return Ok(());
    }
    let median = |v: &[f64]| copy_rate::percentile(v, 50.0);
    writeln!(
        out,
        "{}: copy rate {:.1} % ({} of {} samples nearer a training scene than {:.4}, the 1st percentile of {} fresh scenes of seed {}); median distance {:.4} (samples) and {:.4} (fresh scenes); {} training scenes searched in {:.1} s; plot {}",
        r.model,
        100.0 * r.copy_rate,
        r.copies,
        r.samples,
        r.threshold,
        r.samples,
        r.fresh_seed,
        median(&r.sample_distances),
        median(&r.fresh_distances),
        r.stream.len(),
        r.seconds,
        r.out.display()
    )?;
    Ok(())
}
