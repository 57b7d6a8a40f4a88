//! `diffuse eval`: the judge's accuracy on a model's samples for every prompt, a sweep over
//! samplers and step counts, or (`--self-test`) the judge itself on noisy dataset images.

use std::io::Write;
use std::path::PathBuf;

use anyhow::Result;
use clap::Args;

use diffuse::io::fs;
use diffuse::jobs::count;
use diffuse::jobs::eval::{self as job, EvalOptions, EvalReport, SweepPoint};
use diffuse::sampler::SamplerKind;

use super::flags::{parse, DeviceFlag, ModelFlag, SamplingFlags};
use super::Context;
use diffuse::jobs::eval::Judge;
use diffuse::jobs::eval_emoji::{self as emoji_job, Counts, EmojiReport, GridPrompts};
use diffuse::progress::Progress;

#[derive(Args)]
pub struct EvalArgs {
    #[command(flatten)]
    device: DeviceFlag,
    #[command(flatten)]
    model: ModelFlag,
    /// Samples per (colour, shape) prompt.
    #[arg(long, default_value_t = job::DEFAULT_SAMPLES_PER_PROMPT)]
    samples_per_prompt: usize,
    /// Sampler, steps and guidance (defaults: generate's).
    #[command(flatten)]
    sampling: SamplingFlags,
    /// Seed of the sampling noise.
    #[arg(long, default_value_t = job::DEFAULT_SEED)]
    seed: u64,
    /// Judge fresh dataset images under added noise instead of a model's samples: the shapes
    /// judge, or with `--self-test emoji` the emoji-scene judge.
    #[arg(long, num_args = 0..=1, default_missing_value = "shapes", value_name = "JUDGE",
          value_parser = parse::<Judge>, conflicts_with_all = ["sweep", "grid"])]
    self_test: Option<Judge>,
    /// Measure accuracy against step count for each sampler; print a table and plot it here.
    #[arg(long, value_name = "PLOT.png", conflicts_with = "grid")]
    sweep: Option<PathBuf>,
    /// Also save every sample as one labelled picture here (6×6 for one sample per prompt).
    #[arg(long, value_name = "GRID.png")]
    grid: Option<PathBuf>,
    /// Which prompts of a text model the grid shows: all, single, seen or held-out (the
    /// evaluation and its table always cover every prompt).
    #[arg(long, default_value = "all", value_parser = parse::<GridPrompts>, requires = "grid")]
    grid_prompts: GridPrompts,
    /// Step counts for --sweep.
    #[arg(long, value_delimiter = ',', default_values_t = job::DEFAULT_SWEEP_STEPS)]
    sweep_steps: Vec<usize>,
    /// Overwrite an existing sweep plot or grid.
    #[arg(long)]
    force: bool,
    /// Print one JSON object.
    #[arg(long)]
    json: bool,
}

impl EvalArgs {
    fn options(&self, model: &diffuse::model::LoadedModel) -> EvalOptions {
        let (sampler, guidance) = self.sampling.resolve(model);
        EvalOptions {
            samples_per_prompt: self.samples_per_prompt,
            sampler: sampler.kind,
            steps: sampler.steps,
            guidance,
            thresholding: sampler.thresholding,
            seed: self.seed,
        }
    }
}

pub fn run(args: &EvalArgs, ctx: &Context) -> Result<()> {
    match args.self_test {
        Some(Judge::Shapes) => return self_test(args.json),
        Some(Judge::Emoji) => return emoji_self_test(args.json),
        None => {}
    }
    let model = ctx.model(&args.device, &args.model)?;
    let opts = args.options(&model);
    if model.meta.unet.text.is_some() {
        return run_emoji(args, &model, &opts, ctx);
    }
    if args.grid_prompts != GridPrompts::All {
        super::usage!("--grid-prompts picks prompt groups of a text model; this model has prompt slots (use --grid alone)");
    }
    let mut out = std::io::stdout().lock();
    if let Some(plot) = &args.sweep {
        fs::check_overwrite(plot, args.force)?;
        let points = job::sweep(
            &model,
            &SamplerKind::ALL,
            &args.sweep_steps,
            &opts,
            &ctx.bars,
        )?;
        job::save_sweep_plot(&points, plot)?;
        if args.json {
            writeln!(out, "{}", serde_json::to_string(&points)?)?;
        } else {
            sweep_table(&mut out, &points)?;
            writeln!(out, "plot written to {}", plot.display())?;
        }
        return Ok(());
    }
    if let Some(grid) = &args.grid {
        fs::check_overwrite(grid, args.force)?;
    }
    let report = job::evaluate(&model, &opts, &ctx.bars)?;
    if let Some(grid) = &args.grid {
        job::save_grid(&report, grid)?;
        diffuse::progress::Progress::note(
            &ctx.bars,
            &format!("samples written to {}", grid.display()),
        );
    }
    if args.json {
        writeln!(out, "{}", serde_json::to_string(&report)?)?;
        return Ok(());
    }
    report_table(&mut out, &report)?;
    Ok(())
}

fn self_test(json: bool) -> Result<()> {
    let rows = job::self_test(
        job::SELF_TEST_COUNT,
        job::SELF_TEST_SEED,
        &job::SELF_TEST_SIGMAS,
    )?;
    print_self_test(json, &rows, "judge", "images", |out| {
        writeln!(
            out,
            "{:>12} {:>8} {:>8} {:>8} {:>10}",
            "noise sigma", "colour", "shape", "both", "no object"
        )?;
        for r in &rows {
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
        Ok(())
    })
}

/// Prints self-test rows as JSON, or a heading and `table`.
fn print_self_test<R: serde::Serialize>(
    json: bool,
    rows: &R,
    judge: &str,
    what: &str,
    table: impl FnOnce(&mut std::io::StdoutLock) -> std::io::Result<()>,
) -> Result<()> {
    let mut out = std::io::stdout().lock();
    if json {
        writeln!(out, "{}", serde_json::to_string(rows)?)?;
        return Ok(());
    }
    writeln!(
        out,
        "{judge} on {} fresh dataset {what} (seed {})",
        job::SELF_TEST_COUNT,
        job::SELF_TEST_SEED
    )?;
    table(&mut out)?;
    Ok(())
}

fn sweep_table(out: &mut impl Write, points: &[SweepPoint]) -> std::io::Result<()> {
    writeln!(
        out,
        "{:<10} {:>6} {:>8} {:>8} {:>8} {:>8}",
        "sampler", "steps", "colour", "shape", "both", "seconds"
    )?;
    for p in points {
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
    Ok(())
}

fn report_table(out: &mut impl Write, report: &EvalReport) -> std::io::Result<()> {
    let o = &report.options;
    writeln!(
        out,
        "{} ({} per prompt), {} {}, guidance {}, seed {}: colour {:.1}%, shape {:.1}%, both {:.1}%, no clear object {} ({:.0} s)",
        count(report.total as u64, "sample"), o.samples_per_prompt, o.sampler, count(o.steps as u64, "step"), o.guidance, o.seed,
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

/// `diffuse eval` on a text model: the emoji prompt set.
fn run_emoji(
    args: &EvalArgs,
    model: &diffuse::model::LoadedModel,
    opts: &EvalOptions,
    ctx: &Context,
) -> Result<()> {
    if args.sweep.is_some() {
        super::usage!("--sweep measures shapes models; for a text model run eval once per --sampler and --steps");
    }
    if let Some(grid) = &args.grid {
        fs::check_overwrite(grid, args.force)?;
    }
    let report = emoji_job::evaluate(model, opts, &ctx.bars)?;
    if let Some(grid) = &args.grid {
        emoji_job::save_grid(&report, args.grid_prompts, grid)?;
        ctx.bars
            .note(&format!("samples written to {}", grid.display()));
    }
    let mut out = std::io::stdout().lock();
    if args.json {
        writeln!(out, "{}", serde_json::to_string(&report)?)?;
    } else {
        emoji_table(&mut out, &report)?;
    }
    Ok(())
}

fn pct(v: f64) -> String {
    if v.is_nan() {
        "-".into()
    } else {
        format!("{:.1}%", 100.0 * v)
    }
}

/// One row of the emoji table, the name padded to `width`.
fn counts_row(out: &mut impl Write, width: usize, name: &str, c: &Counts) -> std::io::Result<()> {
    writeln!(
        out,
        "{:<width$} {:>8} {:>9} {:>10} {:>10}",
        name,
        c.samples,
        pct(c.object_accuracy()),
        pct(c.all_accuracy()),
        pct(c.relation_accuracy())
    )
}

fn emoji_table(out: &mut impl Write, r: &EmojiReport) -> std::io::Result<()> {
    let o = &r.options;
    writeln!(
        out,
        "{} × {}, {} {}, guidance {}, seed {} ({:.0} s)",
        count(r.prompts.len() as u64, "prompt"),
        count(o.samples_per_prompt as u64, "sample"),
        o.sampler,
        count(o.steps as u64, "step"),
        o.guidance,
        o.seed,
        r.seconds
    )?;
    // Wide enough for the longest caption ("a computer left of a rocket").
    let w = r
        .prompts
        .iter()
        .map(|p| p.prompt.caption.chars().count())
        .fold(24, usize::max);
    writeln!(
        out,
        "{:<w$} {:>8} {:>9} {:>10} {:>10}",
        "prompts", "samples", "objects", "all found", "relation"
    )?;
    counts_row(out, w, "one noun", &r.single)?;
    counts_row(out, w, "seen pairs", &r.seen_pairs)?;
    counts_row(out, w, "held-out pairs (novel)", &r.held_out_pairs)?;
    counts_row(out, w, "a cat with a computer", &r.cat_with_computer)?;
    writeln!(out)?;
    for p in &r.prompts {
        counts_row(out, w, &p.prompt.caption, &p.counts)?;
    }
    Ok(())
}

fn emoji_self_test(json: bool) -> Result<()> {
    let rows = emoji_job::self_test(
        job::SELF_TEST_COUNT,
        job::SELF_TEST_SEED,
        &job::SELF_TEST_SIGMAS,
        &emoji_job::SELF_TEST_BLURS,
    )?;
    print_self_test(json, &rows, "emoji judge", "scenes", |out| {
        writeln!(
            out,
            "{:>11} {:>10} {:>10} {:>12} {:>10} {:>10} {:>13}",
            "noise sigma",
            "blur px",
            "one noun",
            "pair objects",
            "pair both",
            "relation",
            "extra object"
        )?;
        for r in &rows {
            let mut all = r.single.clone();
            all.extra += r.pairs.extra;
            all.samples += r.pairs.samples;
            writeln!(
                out,
                "{:>11.2} {:>10.1} {:>10} {:>12} {:>10} {:>10} {:>13}",
                r.noise_sigma,
                r.blur_sigma,
                pct(r.single.all_accuracy()),
                pct(r.pairs.object_accuracy()),
                pct(r.pairs.all_accuracy()),
                pct(r.pairs.relation_accuracy()),
                pct(all.extra_rate())
            )?;
        }
        Ok(())
    })
}
