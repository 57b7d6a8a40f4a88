//! What the suite's parts share: its options, one figure ([`Row`]), the one way a part is
//! timed (`measure`, with the peak heap) and its run budget.

use serde::Serialize;

use super::{time_loop, Timing};
use crate::error::Result;

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
    /// The model file those processes load (None: the built-in model).
    pub model_path: Option<std::path::PathBuf>,
}

impl Default for SuiteOptions {
    fn default() -> Self {
        Self {
            quick: false,
            train_batch: crate::train::TrainConfig::default().batch_size,
            scratch: std::env::temp_dir().join(format!("diffuse-bench-{}", std::process::id())),
            exe: None,
            model_path: None,
        }
    }
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

/// Times `f` with the one timing loop ([`time_loop`]); returns the timing and the peak heap
/// above the start, in MiB.
pub(super) fn measure(
    warmup: usize,
    runs: usize,
    long_ms: f64,
    f: impl FnMut() -> Result<()>,
) -> Result<(Timing, Option<f64>)> {
    let base = crate::alloc::reset_peak();
    let timing = time_loop(warmup, runs, long_ms, f)?;
    let peak = match (base, crate::alloc::peak_bytes()) {
        (Some(b), Some(p)) => Some(p.saturating_sub(b) as f64 / (1024.0 * 1024.0)),
        _ => None,
    };
    Ok((timing, peak))
}

pub(super) fn row(
    part: &'static str,
    case: String,
    timing: Timing,
    work: f64,
    unit: &'static str,
) -> Row {
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

/// How many runs and how long a run may take, from `--quick`.
#[derive(Clone, Copy)]
pub(super) struct Budget {
    pub(super) quick: bool,
    pub(super) runs: usize,
    /// A single call this long is not repeated.
    pub(super) long_ms: f64,
}
