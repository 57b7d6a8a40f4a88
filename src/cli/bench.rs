//! `diffuse bench`: the full suite as a Markdown table (or `--json`), or the denoiser alone
//! as benches/pytorch_reference.py compares it.

use std::io::Write;
use std::path::PathBuf;

use anyhow::Result;
use clap::Args;

use diffuse::bench::{self, suite::SuiteReport, ModelReport};
use diffuse::progress::Progress;

use super::flags::DeviceFlag;
use super::flags::ModelFlag;
use super::Context;

#[derive(Args)]
pub struct BenchArgs {
    #[command(flatten)]
    device: DeviceFlag,
    /// Fewer cases and runs: the whole suite in under a minute.
    #[arg(long)]
    quick: bool,
    /// Print one JSON object instead of tables.
    #[arg(long)]
    json: bool,
    /// Model for the end-to-end figures (default: the built-in model).
    #[command(flatten)]
    model: ModelFlag,
    /// Only the denoiser (forward at batch 1/16/64 and the training step), as
    /// benches/pytorch_reference.py compares it.
    #[arg(long, conflicts_with = "model")]
    model_only: bool,
    /// With --model-only: width of the benchmarked UNet's first level (default: the
    /// network's own).
    #[arg(long)]
    base_channels: Option<usize>,
    /// With --model-only: which network, `shapes` (the 32 px slot model) or `emoji` (the
    /// 64 px text model with cross-attention, timed at batch 1 and 16 and a training step at
    /// batch 32).
    #[arg(long, default_value_t = bench::Network::Shapes, value_parser = super::flags::parse::<bench::Network>)]
    network: bench::Network,
    /// Write weights, config and a fixed input/output pair for benches/pytorch_reference.py.
    #[arg(long, value_name = "DIR", conflicts_with = "model")]
    export_parity: Option<PathBuf>,
}

pub fn run(args: &BenchArgs, ctx: &Context) -> Result<()> {
    let device = ctx.device(&args.device)?;
    if args.model_only || args.export_parity.is_some() {
        return run_model_only(args, &device, ctx);
    }
    if args.base_channels.is_some() || args.network != bench::Network::Shapes {
        super::usage!("--base-channels and --network choose the network of --model-only; the full suite times --model");
    }
    let model = diffuse::model::load(args.model.model.as_deref(), &device)?;
    if matches!(model.net, diffuse::model::Network::Diffusers(_)) {
        return run_loaded(&model, args, ctx);
    }
    let opts = bench::suite::SuiteOptions {
        quick: args.quick,
        scratch: std::env::temp_dir().join(format!("diffuse-bench-{}", std::process::id())),
        exe: std::env::current_exe().ok(),
        model_path: args.model.model.clone(),
        ..Default::default()
    };
    let report = bench::suite::run(&model, &opts, &ctx.bars)?;
    let mut out = std::io::stdout().lock();
    if args.json {
        writeln!(out, "{}", serde_json::to_string(&report)?)?;
    } else {
        write!(out, "{}", suite_table(&report))?;
    }
    Ok(())
}

/// A diffusers folder: the forward pass at batch 1 and 16.
fn run_loaded(model: &diffuse::model::LoadedModel, args: &BenchArgs, ctx: &Context) -> Result<()> {
    let runs = if args.quick { 3 } else { 10 };
    let report = bench::loaded::forward(model, &[1, 16], runs, &ctx.bars)?;
    let mut out = std::io::stdout().lock();
    if args.json {
        writeln!(out, "{}", serde_json::to_string(&report)?)?;
        return Ok(());
    }
    let (c, h, w) = report.sample_shape;
    writeln!(
        out,
        "{}: forward of {c}x{h}x{w} samples, {} threads",
        report.model, report.threads
    )?;
    writeln!(
        out,
        "| batch | median | min .. max | runs | images/s |\n|---:|---:|---:|---:|---:|"
    )?;
    for r in &report.rows {
        let t = &r.timing;
        writeln!(
            out,
            "| {} | {} | {} .. {} | {} | {:.1} |",
            r.batch,
            human_ms(t.median_ms),
            human_ms(t.min_ms),
            human_ms(t.max_ms),
            t.runs,
            r.images_per_s
        )?;
    }
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

/// The suite as a Markdown table, so it pastes into a README as it is.
fn suite_table(r: &SuiteReport) -> String {
    let m = &r.machine;
    let features = match r.build.features.is_empty() {
        true => "none".to_string(),
        false => r.build.features.join(", "),
    };
    let mut s = format!(
        "diffuse {} ({} build, features: {features}) on {}, {} cores, {} threads, device {}, {}/{}\n",
        r.build.version, r.build.profile, m.cpu, m.cores, m.threads, m.device, m.os, m.arch
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
        let gflops = match (row.gflops, row.peak_fraction) {
            (Some(g), Some(f)) => format!("{g:.1} ({:.0}%)", 100.0 * f),
            _ => String::new(),
        };
        s += &format!(
            "| {} | {} | {} | {} .. {} | {} | {} {} | {gflops} | {} | {} |\n",
            row.part,
            row.case,
            human_ms(t.median_ms),
            human_ms(t.min_ms),
            human_ms(t.max_ms),
            t.runs,
            human_rate(row.rate),
            row.unit,
            row.speedup.map_or(String::new(), |x| format!("{x:.2}x")),
            row.peak_heap_mib
                .map_or("n/a".to_string(), |mb| format!("{mb:.1} MiB")),
        );
    }
    for case in &r.skipped {
        s += &format!("\nleft out: {case}");
    }
    s
}

/// The denoiser-only report (`--model-only`), which benches/pytorch_reference.py reads.
fn run_model_only(args: &BenchArgs, device: &candle_core::Device, ctx: &Context) -> Result<()> {
    let mut opts = bench::ModelBenchOptions::for_network(args.network);
    if let Some(c) = args.base_channels {
        opts.config.base_channels = c;
    }
    opts.runs = if args.quick { 3 } else { 7 };
    let config = opts.config.clone();
    if let Some(dir) = &args.export_parity {
        bench::export_parity(&config, dir)?;
        ctx.bars
            .note(&format!("parity files written to {}", dir.display()));
    }
    let report = bench::bench_model(&opts, device, &ctx.bars)?;
    let mut out = std::io::stdout().lock();
    if args.json {
        let json = serde_json::json!({
            "diffuse_version": env!("CARGO_PKG_VERSION"),
            "features": diffuse::device::compiled_features(),
            "model": report,
        });
        writeln!(out, "{json}")?;
        return Ok(());
    }
    model_table(&mut out, &report)?;
    Ok(())
}

fn model_table(out: &mut impl Write, report: &ModelReport) -> std::io::Result<()> {
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
    let forward = report.forward.iter().map(|r| {
        let name = format!("forward, batch {}", r.batch);
        (name, r.timing, r.gflops, r.peak_fraction)
    });
    let step = std::iter::once((
        format!("train step, batch {}", train.batch),
        train.timing,
        train.gflops,
        train.peak_fraction,
    ));
    for (name, t, gflops, frac) in forward.chain(step) {
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
