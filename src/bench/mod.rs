//! Benchmarks of every diffusion step: the workloads ([`cases`], shared with the criterion
//! benches in `benches/` so both measure the same code), timing with medians and spread, the
//! denoiser-only report that `benches/pytorch_reference.py` reads, and the full `diffuse bench`
//! suite ([`suite`]).

pub mod cases;
pub mod end_to_end;
pub mod loaded;
pub mod machine;
pub mod measure;
pub mod suite;

pub use cases::{FrameCase, GenerateCase, QSampleCase, SamplerCase, UNetCase};

use candle_core::{Device, Tensor};

use crate::error::Result;

/// Median, minimum and maximum of repeated timings, in milliseconds.
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct Timing {
    pub median_ms: f64,
    pub min_ms: f64,
    pub max_ms: f64,
    pub runs: usize,
}

impl Timing {
    /// Median, minimum and maximum of the samples (in ms).
    pub fn from_samples(mut ms: Vec<f64>) -> Timing {
        ms.sort_by(|a, b| a.total_cmp(b));
        if ms.is_empty() {
            ms.push(0.0);
        }
        Timing {
            median_ms: ms[ms.len() / 2],
            min_ms: ms[0],
            max_ms: ms[ms.len() - 1],
            runs: ms.len(),
        }
    }

    /// The same timing divided by `n` (per step, per image).
    pub fn per(&self, n: usize) -> Timing {
        let n = n.max(1) as f64;
        Timing {
            median_ms: self.median_ms / n,
            min_ms: self.min_ms / n,
            max_ms: self.max_ms / n,
            runs: self.runs,
        }
    }
}

/// The timing loop: `warmup` untimed calls, then `f` timed `runs` times, or once when a
/// single call already takes `long_ms` or more.
pub fn time_loop(
    warmup: usize,
    runs: usize,
    long_ms: f64,
    mut f: impl FnMut() -> Result<()>,
) -> Result<Timing> {
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
    Ok(Timing::from_samples(ms))
}

/// Times `f` `runs` times after `warmup` untimed calls.
pub fn time_it(warmup: usize, runs: usize, f: impl FnMut() -> Result<()>) -> Result<Timing> {
    time_loop(warmup, runs, f64::INFINITY, f)
}

/// Waits for the device by reading one value of `t` (the one device sync of every timing).
pub fn sync(t: &Tensor) -> Result<()> {
    t.flatten_all()?
        .get(0)?
        .to_dtype(candle_core::DType::F32)?
        .to_scalar::<f32>()?;
    Ok(())
}

/// The throughput of a large f32 GEMM on every thread: the practical peak the denoiser's
/// GFLOP/s is compared with.
pub fn gemm_peak_gflops() -> Result<f64> {
    let n = 1024;
    let a = vec![1.0f32; n * n];
    let b = vec![0.5f32; n * n];
    let mut c = vec![0.0f32; n * n];
    let t = time_it(1, 5, || {
        // SAFETY: three distinct n×n row-major buffers.
        unsafe {
            crate::nn::sgemm(
                (n, n, n),
                c.as_mut_ptr(),
                (n as isize, 1),
                false,
                a.as_ptr(),
                (n as isize, 1),
                b.as_ptr(),
                (n as isize, 1),
                true,
            )
        };
        Ok(())
    })?;
    Ok(2.0 * (n * n * n) as f64 / (t.median_ms * 1e-3) / 1e9)
}

/// One forward-latency row.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ForwardRow {
    pub batch: usize,
    pub timing: Timing,
    pub ms_per_image: f64,
    pub gflops: f64,
    pub peak_fraction: f64,
}

/// The training-step row: forward + MSE + backward + AdamW.
#[derive(Debug, Clone, serde::Serialize)]
pub struct TrainRow {
    pub batch: usize,
    pub timing: Timing,
    /// Forward FLOPs × 3 (backward ≈ 2× forward) per second.
    pub gflops: f64,
    pub peak_fraction: f64,
}

/// What `diffuse bench --model-only` measures.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ModelReport {
    pub parameters: usize,
    pub gflop_per_image: f64,
    pub threads: usize,
    pub device: String,
    pub peak_gflops: f64,
    pub forward: Vec<ForwardRow>,
    pub train: TrainRow,
}

/// Which network `diffuse bench --model-only` times.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Network {
    /// [`UNetConfig::default`](crate::unet::UNetConfig): the 32 px shapes model.
    Shapes,
    /// [`UNetConfig::emoji`](crate::unet::UNetConfig::emoji): the 64 px text model.
    Emoji,
}

impl std::str::FromStr for Network {
    type Err = crate::Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "shapes" => Ok(Network::Shapes),
            "emoji" => Ok(Network::Emoji),
            _ => Err(crate::Error::unknown("network", s, &["shapes", "emoji"])),
        }
    }
}

impl std::fmt::Display for Network {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Network::Shapes => "shapes",
            Network::Emoji => "emoji",
        })
    }
}

impl ModelBenchOptions {
    /// The network's config with the batches its targets name: forward at 1/16/64 and a
    /// training step at 64 for shapes; forward at 1/16 and a training step at 32 for emoji.
    pub fn for_network(network: Network) -> Self {
        match network {
            Network::Shapes => Self::default(),
            Network::Emoji => Self {
                config: crate::unet::UNetConfig::emoji(),
                forward_batches: vec![1, 16],
                train_batch: 32,
                ..Self::default()
            },
        }
    }
}

/// Settings of the model benchmark.
#[derive(Debug, Clone)]
pub struct ModelBenchOptions {
    pub config: crate::unet::UNetConfig,
    pub forward_batches: Vec<usize>,
    pub train_batch: usize,
    /// Timed runs per figure (after one warm-up).
    pub runs: usize,
}

impl Default for ModelBenchOptions {
    fn default() -> Self {
        Self {
            config: Default::default(),
            forward_batches: vec![1, 16, 64],
            train_batch: 64,
            runs: 5,
        }
    }
}

/// Times the denoiser's forward pass per batch size and one training step.
pub fn bench_model(
    opts: &ModelBenchOptions,
    device: &Device,
    progress: &dyn crate::progress::Progress,
) -> Result<ModelReport> {
    let case = UNetCase::new(&opts.config, device)?;
    let flop = opts.config.flops_per_image();
    progress.stage("GEMM peak", 1);
    let peak = gemm_peak_gflops()?;
    progress.finish();
    progress.stage("forward", opts.forward_batches.len() as u64);
    let mut forward = Vec::new();
    for &b in &opts.forward_batches {
        let (x, t, cond, _) = case.inputs(b)?;
        let runs = if b >= 32 {
            opts.runs.div_ceil(2).max(3)
        } else {
            opts.runs
        };
        let timing = time_it(1, runs, || sync(&case.forward(&x, &t, &cond)?))?;
        let gflops = flop * b as f64 / (timing.median_ms * 1e-3) / 1e9;
        forward.push(ForwardRow {
            batch: b,
            timing,
            ms_per_image: timing.median_ms / b as f64,
            gflops,
            peak_fraction: gflops / peak,
        });
        progress.advance(1);
    }
    progress.finish();
    progress.stage("training step", 1);
    let b = opts.train_batch;
    let (x, t, cond, eps) = case.inputs(b)?;
    let mut opt = case.optimizer()?;
    let timing = time_it(1, opts.runs.div_ceil(2).max(3), || {
        case.train_step(&mut opt, &x, &t, &cond, &eps).map(|_| ())
    })?;
    progress.finish();
    let gflops = 3.0 * flop * b as f64 / (timing.median_ms * 1e-3) / 1e9;
    Ok(ModelReport {
        parameters: crate::unet::parameter_count(&case.varmap),
        gflop_per_image: flop / 1e9,
        threads: rayon::current_num_threads(),
        device: crate::device::device_name(device),
        peak_gflops: peak,
        forward,
        train: TrainRow {
            batch: b,
            timing,
            gflops,
            peak_fraction: gflops / peak,
        },
    })
}

/// Writes what `benches/pytorch_reference.py` needs to check parity: the weights
/// (`weights.safetensors`), the config (`config.json`) and a fixed input with the denoiser's
/// output (`parity.safetensors`: x [2,3,H,W], t [2] f32, cond [2,slots] i64, out [2,3,H,W]).
pub fn export_parity(config: &crate::unet::UNetConfig, dir: &std::path::Path) -> Result<()> {
    use crate::io::fs;
    fs::create_dir(dir)?;
    let case = UNetCase::new(config, &Device::Cpu)?;
    let weights = dir.join("weights.safetensors");
    fs::write_atomic_via(&weights, |tmp| {
        case.varmap.save(tmp).map_err(crate::Error::from)
    })?;
    let json = serde_json::to_vec_pretty(config).map_err(|e| crate::Error::Encode {
        format: "JSON",
        reason: e.to_string(),
    })?;
    fs::write_atomic(&dir.join("config.json"), &json)?;
    let (x, t, cond, _) = case.inputs(2)?;
    let out = case.forward(&x, &t, &cond)?;
    let tensors = std::collections::HashMap::from([
        ("x".to_string(), x),
        (
            "t".to_string(),
            Tensor::from_vec(
                t.iter().map(|&v| v as f32).collect::<Vec<_>>(),
                2,
                &Device::Cpu,
            )?,
        ),
        ("cond".to_string(), cond.to_dtype(candle_core::DType::I64)?),
        ("out".to_string(), out),
    ]);
    crate::io::safetensors::save(&dir.join("parity.safetensors"), &tensors)
}
