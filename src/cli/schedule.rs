//! `diffuse schedule`: print or plot a noise schedule exactly as diffusers computes it.

use std::io::Write;
use std::path::PathBuf;

use anyhow::Result;
use clap::Args;

use diffuse::io::fs;
use diffuse::render::plot;
use diffuse::schedule::{BetaSchedule, NoiseSchedule, ScheduleChoice, ScheduleConfig};

use super::flags::{parse, ScheduleFlags};

#[derive(Args)]
pub struct ScheduleArgs {
    /// linear, scaled-linear, cosine, sigmoid, or all (diffusers' names are accepted too).
    #[arg(long, default_value_t = ScheduleChoice::One(ScheduleConfig::default().beta_schedule),
          value_parser = parse::<ScheduleChoice>)]
    beta_schedule: ScheduleChoice,
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

pub fn run(args: &ScheduleArgs) -> Result<()> {
    let schedules = args
        .beta_schedule
        .schedules()
        .into_iter()
        .map(|k| NoiseSchedule::new(args.schedule.config(k)))
        .collect::<diffuse::Result<Vec<_>>>()?;
    if let Some(path) = &args.plot {
        fs::check_overwrite(path, args.force)?;
        plot::save_schedule_plot(&schedules, path)?;
    }
    let mut out = std::io::stdout().lock();
    if args.json {
        writeln!(out, "{}", json(&schedules))?;
        return Ok(());
    }
    for s in &schedules {
        table(&mut out, s)?;
    }
    if let Some(path) = &args.plot {
        writeln!(out, "plot written to {}", path.display())?;
    }
    Ok(())
}

/// One schedule as an object, or several under `schedules`.
fn json(schedules: &[NoiseSchedule]) -> serde_json::Value {
    let mut objects: Vec<serde_json::Value> = schedules
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
    match objects.len() {
        1 => objects.remove(0),
        _ => serde_json::json!({ "schedules": objects }),
    }
}

/// Eleven rows of one schedule, t = 0 to T−1.
fn table(out: &mut impl Write, s: &NoiseSchedule) -> std::io::Result<()> {
    let t_total = s.len();
    let betas = if s.config.beta_schedule == BetaSchedule::Cosine {
        "cosine ᾱ_t, β capped at 0.999; --beta-start and --beta-end are not used".to_string()
    } else {
        format!(
            "beta_start {}, beta_end {}",
            s.config.beta_start, s.config.beta_end
        )
    };
    writeln!(
        out,
        "{} schedule, T = {t_total} ({betas})",
        s.config.beta_schedule
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
    writeln!(out)
}
