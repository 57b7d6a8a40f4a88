//! The `diffuse bench` suite: forward noising, the denoiser (alone and guided), each
//! sampler's own cost, end-to-end generation with frames off and on, frame encoding with its
//! rayon speed-up, and a training step; each figure a median with its spread and the part's
//! peak heap, plus the machine and the build it ran on.

use candle_core::Device;
use serde::Serialize;

use super::cases::{FrameCase, QSampleCase, SamplerCase, UNetCase};
use super::machine::{build, machine, Build, Machine};
use super::measure::{measure, row, Budget};
pub use super::measure::{Row, SuiteOptions};
use super::{gemm_peak_gflops, sync};
use crate::error::{Error, Result};
use crate::model::LoadedModel;
use crate::progress::Progress;
use crate::sampler::SamplerKind;

/// The whole report (`diffuse bench --json` prints it).
#[derive(Debug, Clone, Serialize)]
pub struct SuiteReport {
    pub machine: Machine,
    pub build: Build,
    pub quick: bool,
    pub peak_gflops: f64,
    pub parameters: usize,
    pub gflop_per_image: f64,
    pub rows: Vec<Row>,
    /// End-to-end cases left out because their denoiser work is over
    /// [`MAX_CASE_GFLOP`](super::end_to_end::MAX_CASE_GFLOP).
    pub skipped: Vec<String>,
    pub seconds: f64,
}

/// Runs the suite with `model` for the end-to-end figures, on the model's device.
pub fn run(
    model: &LoadedModel,
    opts: &SuiteOptions,
    progress: &dyn Progress,
) -> Result<SuiteReport> {
    if matches!(model.net, crate::model::Network::Diffusers(_)) {
        return Err(crate::Error::Unsupported(format!(
            "{} is a diffusers folder: time its forward pass with bench::loaded",
            model.name
        )));
    }
    let began = std::time::Instant::now();
    let device = model.device();
    let budget = Budget {
        quick: opts.quick,
        runs: if opts.quick { 3 } else { 7 },
        long_ms: if opts.quick { 1_500.0 } else { 10_000.0 },
    };
    progress.stage("GEMM peak", 1);
    let peak = gemm_peak_gflops()?;
    progress.finish();
    // A trainable copy (random weights) for the inputs and the training step.
    let unet = UNetCase::new(&model.meta.unet, device)?;
    let mut rows = forward_noising(budget, device, progress)?;
    rows.extend(denoiser(model, &unet, peak, budget, progress)?);
    rows.extend(samplers(budget, device, progress)?);
    let (generated, skipped) = super::end_to_end::generate(model, opts, budget, progress)?;
    rows.extend(generated);
    rows.extend(frame_output(budget, progress)?);
    rows.push(training_step(
        &unet,
        opts.train_batch,
        peak,
        budget,
        progress,
    )?);
    Ok(SuiteReport {
        machine: machine(device),
        build: build(),
        quick: opts.quick,
        peak_gflops: peak,
        parameters: crate::unet::parameter_count(&unet.varmap),
        gflop_per_image: model.meta.unet.flops_per_image() / 1e9,
        rows,
        skipped,
        seconds: began.elapsed().as_secs_f64(),
    })
}

/// `q_sample` on a batch of small images and on one large one.
fn forward_noising(b: Budget, device: &Device, progress: &dyn Progress) -> Result<Vec<Row>> {
    let mut rows = Vec::new();
    progress.stage("forward noising", 2);
    for (batch, side) in [(64, 32), (1, 512)] {
        let case = QSampleCase::new(batch, side, side, device)?;
        let runs = if b.quick { 5 } else { 20 };
        let (t, mem) = measure(2, runs, b.long_ms, || sync(&case.run()?))?;
        let name = format!("q_sample {side}x{side}, batch {batch}");
        rows.push(Row {
            peak_heap_mib: mem,
            ..row("forward noising", name, t, batch as f64, "images/s")
        });
        progress.advance(1);
    }
    progress.finish();
    Ok(rows)
}

/// The trained denoiser as generate runs it, alone and guided, at batches 1, 8 and 64.
fn denoiser(
    model: &LoadedModel,
    unet: &UNetCase,
    peak: f64,
    b: Budget,
    progress: &dyn Progress,
) -> Result<Vec<Row>> {
    let flop = model.meta.unet.flops_per_image();
    let batches = [1usize, 8, 64];
    let mut rows = Vec::new();
    progress.stage("denoiser", 2 * batches.len() as u64);
    for guided in [false, true] {
        for &n in &batches {
            let (x, t, _, _) = unet.inputs(n)?;
            let ids = unet.cond_ids(n);
            let nulls = vec![crate::prompt::null_ids(&model.meta.unet); n];
            let g = model.guided(if guided { 3.0 } else { 1.0 }, &ids, &nulls)?;
            let (timing, mem) = measure(1, b.runs, b.long_ms, || {
                sync(&g.predict(&x, t[0] as usize)?)
            })?;
            let images = if guided { 2 * n } else { n };
            let gflops = flop * images as f64 / (timing.median_ms * 1e-3) / 1e9;
            let name = if guided {
                format!("guided, batch {n} ({} images)", 2 * n)
            } else {
                format!("forward, batch {n}")
            };
            rows.push(Row {
                gflops: Some(gflops),
                peak_fraction: Some(gflops / peak),
                peak_heap_mib: mem,
                ..row("denoiser", name, timing, n as f64, "images/s")
            });
            progress.advance(1);
        }
    }
    progress.finish();
    Ok(rows)
}

/// Each sampler's own per-step work (a stand-in model), batch 8, 50 steps.
fn samplers(b: Budget, device: &Device, progress: &dyn Progress) -> Result<Vec<Row>> {
    let steps = 50;
    let mut rows = Vec::new();
    progress.stage("samplers", SamplerKind::ALL.len() as u64);
    for kind in SamplerKind::ALL {
        let case = SamplerCase::new(kind, steps, 8, device)?;
        let (t, mem) = measure(1, b.runs, b.long_ms, || sync(&case.run()?))?;
        let name = format!("{kind}, batch 8, per step");
        rows.push(Row {
            peak_heap_mib: mem,
            ..row("sampler step", name, t.per(steps), 1.0, "steps/s")
        });
        progress.advance(1);
    }
    progress.finish();
    Ok(rows)
}

/// PNG and GIF encoding on rayon's pool and on one thread.
fn frame_output(b: Budget, progress: &dyn Progress) -> Result<Vec<Row>> {
    let (n_frames, side) = if b.quick { (10, 256) } else { (50, 512) };
    progress.stage("frame output", 4);
    let frames = FrameCase::new(n_frames, side, side)?;
    let one = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .map_err(|e| Error::Process {
            what: "a one-thread pool".into(),
            reason: e.to_string(),
        })?;
    let frame_runs = if b.quick { 2 } else { 5 };
    let mut rows = Vec::new();
    for gif in [false, true] {
        let encode = || match gif {
            true => frames.encode_gif().map(|_| ()),
            false => frames.encode_png().map(|_| ()),
        };
        let (t, mem) = measure(1, frame_runs, b.long_ms, encode)?;
        progress.advance(1);
        let (t1, _) = one.install(|| measure(1, frame_runs, b.long_ms, encode))?;
        progress.advance(1);
        let format = if gif { "GIF" } else { "PNG" };
        let name = format!("{n_frames} frames {side}x{side} -> {format}");
        rows.push(Row {
            speedup: Some(t1.median_ms / t.median_ms),
            peak_heap_mib: mem,
            ..row("frame output", name, t, n_frames as f64, "frames/s")
        });
    }
    progress.finish();
    Ok(rows)
}

/// One training step (forward, backward, AdamW) at the trainer's batch size.
fn training_step(
    unet: &UNetCase,
    batch: usize,
    peak: f64,
    b: Budget,
    progress: &dyn Progress,
) -> Result<Row> {
    progress.stage("training step", 1);
    let (x, t, cond, eps) = unet.inputs(batch)?;
    let mut opt = unet.optimizer()?;
    let (timing, mem) = measure(1, b.runs.div_ceil(2).max(3), b.long_ms, || {
        unet.train_step(&mut opt, &x, &t, &cond, &eps).map(|_| ())
    })?;
    progress.finish();
    let flop = unet.model.config.flops_per_image();
    let gflops = 3.0 * flop * batch as f64 / (timing.median_ms * 1e-3) / 1e9;
    Ok(Row {
        gflops: Some(gflops),
        peak_fraction: Some(gflops / peak),
        peak_heap_mib: mem,
        ..row(
            "training",
            format!("step, batch {batch} (forward, backward, AdamW)"),
            timing,
            batch as f64,
            "images/s",
        )
    })
}
