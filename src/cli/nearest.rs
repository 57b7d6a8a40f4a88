//! `diffuse nearest`: is a picture new? The scenes nearest to it among every scene the model
//! was trained on, as a picture, as text and with `--json`.

use std::io::Write;
use std::path::PathBuf;

use anyhow::Result;
use clap::Args;

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
    #[arg(long)]
    image: PathBuf,
    #[command(flatten)]
    model: ModelFlag,
    /// How many nearest training scenes to show (1..=64).
    #[arg(long, default_value_t = DEFAULT_TOP)]
    top: usize,
    /// The picture to write: the query next to its nearest training scenes.
    #[arg(long, value_name = "FILE.png", default_value = "nearest.png")]
    out: PathBuf,
    /// The prompt the picture was drawn for; a held-out pair is named as such.
    #[arg(long)]
    prompt: Option<String>,
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
    let model = ctx.model(&args.device, &args.model)?;
    let opts = NearestOptions {
        image: args.image.clone(),
        top: args.top,
        out: args.out.clone(),
        force: args.force,
        prompt: args.prompt.clone(),
    };
    let report = job::run(&model, &opts, &ctx.bars)?;
    let mut out = std::io::stdout().lock();
    if args.json {
        writeln!(out, "{}", serde_json::to_string(&report)?)?;
        return Ok(());
    }
    writeln!(
        out,
        "{}: nearest of {} training scenes of {} (data seed {}, {} steps of {}), in {:.1} s:",
        report.image.display(),
        report.searched,
        report.model,
        report.stream.data_seed,
        report.stream.steps,
        report.stream.batch_size,
        report.seconds
    )?;
    for n in &report.neighbours {
        writeln!(
            out,
            "  {:.4}  scene {} (step {}): {}",
            n.distance, n.index, n.step, n.caption
        )?;
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
