//! The `diffuse bench` suite: forward noising, the denoiser (alone and guided), each
//! sampler's own cost, end-to-end generation with frames off and on, frame encoding with its
//! rayon speed-up, and a training step; each figure a median with its spread and the part's
//! peak heap, plus the machine and the build it ran on.

use candle_core::{Device, Tensor};
use serde::Serialize;

use super::cases::{FrameCase, GenerateCase, QSampleCase, SamplerCase, UNetCase};
use super::{gemm_peak_gflops, Timing};
use crate::checkpoint::LoadedModel;
use crate::error::{Error, Result};
use crate::pipeline::Guided;
use crate::progress::Progress;
use crate::sampler::SamplerKind;

/// What the suite runs.
#[derive(Debug, Clone)]
pub struct SuiteOptions {
    /// Fewer cases and runs: the whole suite in under a minute on 2 cores.
    pub quick: bool,
    /// Batch of the training-step figure (the trainer's default).
    pub train_batch: usize,
    /// A scratch folder for `generate` with frames; it is removed afterwards.
    pub scratch: std::path::PathBuf,
    /// The `diffuse` executable, to time whole `generate` processes (start-up included).
    pub exe: Option<std::path::PathBuf>,
}

/// Where the suite ran.
#[derive(Debug, Clone, Serialize)]
pub struct Machine {
    pub cpu: String,
    pub cores: usize,
    pub threads: usize,
    pub device: String,
    pub os: &'static str,
    pub arch: &'static str,
}

/// What was measured.
#[derive(Debug, Clone, Serialize)]
pub struct Build {
    pub version: &'static str,
    pub profile: &'static str,
    pub features: Vec<&'static str>,
}

/// One figure.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    pub part: &'static str,
    pub case: String,
    /// Per the row's unit of work (one call, or one step where the case says "per step").
    pub timing: Timing,
    /// Work per second, in `unit`.
    pub rate: f64,
    pub unit: &'static str,
    pub gflops: Option<f64>,
    /// GFLOP/s over the measured GEMM peak.
    pub peak_fraction: Option<f64>,
    /// Speed-up of rayon's pool over one thread.
    pub speedup: Option<f64>,
    /// The most heap the part held above what was live when it began, in MiB (None when
    /// the program's allocator does not count).
    pub peak_heap_mib: Option<f64>,
}

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
    pub seconds: f64,
}

/// The CPU's model name, from `/proc/cpuinfo` where there is one.
pub fn cpu_name() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|v| v.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into())
}

pub fn machine(device: &Device) -> Machine {
    Machine {
        cpu: cpu_name(),
        cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
        threads: rayon::current_num_threads(),
        device: crate::device::device_name(device),
        os: std::env::consts::OS,
        arch: std::env::consts::ARCH,
    }
}

pub fn build() -> Build {
    Build {
        version: env!("CARGO_PKG_VERSION"),
        profile: if cfg!(debug_assertions) {
            "debug"
        } else {
            "release"
        },
        features: crate::device::compiled_features(),
    }
}

/// Times `f` after `warmup` calls: `runs` times, or once when a single call already takes
/// `long_ms`; returns the timing and the peak heap above the start, in MiB.
fn measure(
    warmup: usize,
    runs: usize,
    long_ms: f64,
    mut f: impl FnMut() -> Result<()>,
) -> Result<(Timing, Option<f64>)> {
    let base = crate::alloc::reset_peak();
    for _ in 0..warmup {
        f()?;
    }
    let mut ms = Vec::with_capacity(runs);
    loop {
        let start = std::time::Instant::now();
        f()?;
        ms.push(start.elapsed().as_secs_f64() * 1e3);
        if ms.len() >= runs.max(1) || ms[0] >= long_ms {
            break;
        }
    }
    let timing = Timing::from_samples(ms);
    let peak = match (base, crate::alloc::peak_bytes()) {
        (Some(b), Some(p)) => Some(p.saturating_sub(b) as f64 / (1024.0 * 1024.0)),
        _ => None,
    };
    Ok((timing, peak))
}

/// Waits for the device by reading one value.
fn sync(t: &Tensor) -> Result<()> {
    t.flatten_all()?
        .get(0)?
        .to_dtype(candle_core::DType::F32)?
        .to_scalar::<f32>()?;
    Ok(())
}

fn row(part: &'static str, case: String, timing: Timing, work: f64, unit: &'static str) -> Row {
    Row {
        part,
        case,
        timing,
        rate: work / (timing.median_ms * 1e-3),
        unit,
        gflops: None,
        peak_fraction: None,
        speedup: None,
        peak_heap_mib: None,
    }
}

/// Runs the suite with `model` (and its file's bytes) for the end-to-end figures.
pub fn run(
    model: &LoadedModel,
    model_bytes: &[u8],
    opts: &SuiteOptions,
    device: &Device,
    progress: &dyn Progress,
) -> Result<SuiteReport> {
    let began = std::time::Instant::now();
    let quick = opts.quick;
    let runs = if quick { 3 } else { 7 };
    // A single call this long is not repeated.
    let long_ms = if quick { 1_500.0 } else { 10_000.0 };
    let mut rows = Vec::new();

    progress.stage("GEMM peak", 1);
    let peak = gemm_peak_gflops()?;
    progress.finish();

    // Forward noising.
    progress.stage("forward noising", 2);
    for (batch, side) in [(64, 32), (1, 512)] {
        let case = QSampleCase::new(batch, side, side, device)?;
        let (t, mem) = measure(2, if quick { 5 } else { 20 }, long_ms, || {
            sync(&case.run()?)
        })?;
        let name = format!("q_sample {side}x{side}, batch {batch}");
        rows.push(Row {
            peak_heap_mib: mem,
            ..row("forward noising", name, t, batch as f64, "images/s")
        });
        progress.advance(1);
    }
    progress.finish();

    // The denoiser (the trained model, as generate runs it), alone and guided.
    let config = model.meta.unet.clone();
    let flop = config.flops_per_image();
    // A trainable copy (random weights) for the inputs and the training step.
    let unet = UNetCase::new(&config, device)?;
    let batches = [1usize, 8, 64];
    progress.stage("denoiser", 2 * batches.len() as u64);
    for guided in [false, true] {
        for &b in &batches {
            let (x, t, cond, _) = unet.inputs(b)?;
            let nulls = vec![config.vocab.null_ids(); b];
            let g = Guided {
                model: &model.unet,
                scale: if guided { 3.0 } else { 1.0 },
                cond,
                uncond: crate::unet::cond_tensor(&nulls, device)?,
            };
            let (timing, mem) = measure(1, runs, long_ms, || sync(&g.predict(&x, t[0] as usize)?))?;
            let images = if guided { 2 * b } else { b };
            let gflops = flop * images as f64 / (timing.median_ms * 1e-3) / 1e9;
            let name = if guided {
                format!("guided, batch {b} ({} images)", 2 * b)
            } else {
                format!("forward, batch {b}")
            };
            rows.push(Row {
                gflops: Some(gflops),
                peak_fraction: Some(gflops / peak),
                peak_heap_mib: mem,
                ..row("denoiser", name, timing, b as f64, "images/s")
            });
            progress.advance(1);
        }
    }
    progress.finish();

    // Each sampler's own per-step work.
    let kinds = [
        SamplerKind::Ddpm,
        SamplerKind::Ddim,
        SamplerKind::DpmSolverPP2M,
    ];
    let sampler_steps = 50;
    progress.stage("samplers", kinds.len() as u64);
    for kind in kinds {
        let case = SamplerCase::new(kind, sampler_steps, 8, device)?;
        let (t, mem) = measure(1, runs, long_ms, || sync(&case.run()?))?;
        let per_step = t.per(sampler_steps);
        rows.push(Row {
            peak_heap_mib: mem,
            ..row(
                "sampler step",
                format!("{kind}, batch 8, per step"),
                per_step,
                1.0,
                "steps/s",
            )
        });
        progress.advance(1);
    }
    progress.finish();

    // End-to-end generation.
    let (images, steps): (&[usize], &[usize]) = if quick {
        (&[1, 8], &[10, 25])
    } else {
        (&[1, 8, 64], &[10, 25, 50, 1000])
    };
    progress.stage("generate", (2 * images.len() * steps.len()) as u64 + 1);
    let scratch = &opts.scratch;
    let result = (|| -> Result<()> {
        for &k in images {
            for &n in steps {
                let case = GenerateCase {
                    model,
                    model_bytes,
                    device: device.clone(),
                    images: k,
                    steps: n,
                    out: scratch.join("generate"),
                };
                let warm = GenerateCase {
                    steps: 2,
                    device: device.clone(),
                    out: scratch.join("generate"),
                    ..case
                };
                for frames in [false, true] {
                    let mut seed = 0;
                    warm_up(&warm, frames)?;
                    let (t, mem) = measure(0, runs.min(5), long_ms, || {
                        seed += 1;
                        if frames {
                            case.generate(seed).map(|_| ())
                        } else {
                            case.sample(seed).map(|_| ())
                        }
                    })?;
                    let name = format!(
                        "{k} image{}, {n} steps, {}",
                        if k == 1 { "" } else { "s" },
                        if frames {
                            "all frames written"
                        } else {
                            "no frames"
                        }
                    );
                    rows.push(Row {
                        peak_heap_mib: mem,
                        ..row("generate", name, t, k as f64, "images/s")
                    });
                    progress.advance(1);
                }
            }
        }
        Ok(())
    })();
    let result = result.and_then(|()| match &opts.exe {
        Some(exe) => whole_process(exe, scratch, runs, long_ms).map(|r| rows.extend(r)),
        None => Ok(()),
    });
    let _ = std::fs::remove_dir_all(scratch);
    result?;
    progress.finish();

    // Frame output: PNG and GIF on rayon's pool and on one thread.
    let (n_frames, side) = if quick { (10, 256) } else { (50, 512) };
    progress.stage("frame output", 4);
    let frames = FrameCase::new(n_frames, side, side)?;
    let one = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .map_err(|e| Error::invalid(format!("cannot start a one-thread pool: {e}")))?;
    let frame_runs = if quick { 2 } else { 5 };
    for gif in [false, true] {
        let encode = || {
            if gif {
                frames.encode_gif().map(|_| ())
            } else {
                frames.encode_png().map(|_| ())
            }
        };
        let (t, mem) = measure(1, frame_runs, long_ms, encode)?;
        progress.advance(1);
        let (t1, _) = one.install(|| measure(1, frame_runs, long_ms, encode))?;
        progress.advance(1);
        let name = format!(
            "{n_frames} frames {side}x{side} -> {}",
            if gif { "GIF" } else { "PNG" }
        );
        rows.push(Row {
            speedup: Some(t1.median_ms / t.median_ms),
            peak_heap_mib: mem,
            ..row("frame output", name, t, n_frames as f64, "frames/s")
        });
    }
    progress.finish();

    // A training step.
    progress.stage("training step", 1);
    let b = opts.train_batch;
    let (x, t, cond, eps) = unet.inputs(b)?;
    let mut opt = unet.optimizer()?;
    let (timing, mem) = measure(1, runs.div_ceil(2).max(3), long_ms, || {
        unet.train_step(&mut opt, &x, &t, &cond, &eps).map(|_| ())
    })?;
    let gflops = 3.0 * flop * b as f64 / (timing.median_ms * 1e-3) / 1e9;
    rows.push(Row {
        gflops: Some(gflops),
        peak_fraction: Some(gflops / peak),
        peak_heap_mib: mem,
        ..row(
            "training",
            format!("step, batch {b} (forward, backward, AdamW)"),
            timing,
            b as f64,
            "images/s",
        )
    });
    progress.finish();

    Ok(SuiteReport {
        machine: machine(device),
        build: build(),
        quick,
        peak_gflops: peak,
        parameters: crate::unet::parameter_count(&unet.varmap),
        gflop_per_image: flop / 1e9,
        rows,
        seconds: began.elapsed().as_secs_f64(),
    })
}

/// Wall time of whole `diffuse generate` processes, start-up and model loading included:
/// one image, 20 steps, guidance 3 (the speed target), with all frames and with two.
fn whole_process(
    exe: &std::path::Path,
    scratch: &std::path::Path,
    runs: usize,
    long_ms: f64,
) -> Result<Vec<Row>> {
    let mut rows = Vec::new();
    for frames in ["all", "2"] {
        let out = scratch.join("process");
        let (t, _) = measure(1, runs, long_ms, || {
            let status = std::process::Command::new(exe)
                .args(["generate", "--prompt", "a red circle", "--num-images", "1"])
                .args([
                    "--steps",
                    "20",
                    "--guidance",
                    "3",
                    "--seed",
                    "0",
                    "--frames",
                    frames,
                ])
                .arg("--out")
                .arg(&out)
                .args(["--force", "--quiet"])
                .stdout(std::process::Stdio::null())
                .status()
                .map_err(|e| Error::invalid(format!("cannot run {}: {e}", exe.display())))?;
            if !status.success() {
                return Err(Error::invalid(format!(
                    "{} generate failed ({status})",
                    exe.display()
                )));
            }
            Ok(())
        })?;
        let name = format!("whole process: 1 image, 20 steps, guidance 3, --frames {frames}");
        rows.push(row("generate", name, t, 1.0, "images/s"));
    }
    Ok(rows)
}

/// One short run of a generate case, so the timed runs start warm.
fn warm_up(case: &GenerateCase, frames: bool) -> Result<()> {
    if frames {
        case.generate(0).map(|_| ())
    } else {
        case.sample(0).map(|_| ())
    }
}
