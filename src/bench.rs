//! Benchmark workloads shared by `benches/` (criterion) and, later, `diffuse bench`, so both
//! measure the same code. Each case is built once and then run repeatedly.

use candle_core::{Device, Tensor};
use image::RgbImage;
use rayon::prelude::*;

use crate::error::Result;
use crate::forward;
use crate::frames;
use crate::rng;
use crate::schedule::{NoiseSchedule, ScheduleConfig};

/// Forward noising of a batch: `q_sample` on `[batch, 3, h, w]` with random timesteps.
pub struct QSampleCase {
    pub schedule: NoiseSchedule,
    pub x0: Tensor,
    pub noise: Tensor,
    pub timesteps: Vec<usize>,
}

impl QSampleCase {
    pub fn new(batch: usize, h: usize, w: usize, device: &Device) -> Result<Self> {
        let schedule = NoiseSchedule::new(ScheduleConfig::default())?;
        let mut r = rng::rng(0);
        let x0 = rng::randn(&mut r, (batch, 3, h, w), device)?;
        let noise = rng::randn(&mut r, (batch, 3, h, w), device)?;
        let timesteps = (0..batch).map(|i| (i * 997) % schedule.len()).collect();
        Ok(Self {
            schedule,
            x0,
            noise,
            timesteps,
        })
    }

    /// Images in one run.
    pub fn images(&self) -> usize {
        self.timesteps.len()
    }

    pub fn run(&self) -> Result<Tensor> {
        self.schedule
            .q_sample(&self.x0, &self.timesteps, &self.noise)
    }
}

/// Frame output: `n` noisy RGB frames of `h`×`w`, encoded to PNG and GIF in memory.
pub struct FrameCase {
    pub frames: Vec<RgbImage>,
}

impl FrameCase {
    pub fn new(n: usize, h: usize, w: usize) -> Result<Self> {
        let schedule = NoiseSchedule::new(ScheduleConfig::default())?;
        let mut r = rng::rng(1);
        let x0 = rng::randn(&mut r, (1, 3, h, w), &Device::Cpu)?.clamp(-1f32, 1f32)?;
        let noise = rng::randn(&mut r, (1, 3, h, w), &Device::Cpu)?;
        let frames = forward::evenly_spaced_timesteps(n, schedule.len())?
            .into_iter()
            .map(|t| frames::to_rgb8(&schedule.q_sample(&x0, &[t], &noise)?.squeeze(0)?))
            .collect::<Result<Vec<_>>>()?;
        Ok(Self { frames })
    }

    /// All frames to PNG bytes, in parallel on rayon's pool. Returns the total bytes.
    pub fn encode_png(&self) -> Result<usize> {
        let sizes = self
            .frames
            .par_iter()
            .map(|f| frames::png_bytes(f).map(|b| b.len()))
            .collect::<Result<Vec<_>>>()?;
        Ok(sizes.iter().sum())
    }

    /// All frames to one looping GIF. Returns its size in bytes.
    pub fn encode_gif(&self) -> Result<usize> {
        Ok(frames::gif_bytes(&self.frames, 12.0)?.len())
    }
}

/// The denoiser on random inputs: forward passes and a full training step
/// (forward + MSE on ε + backward + AdamW), the workload `diffuse bench --model-only` times.
pub struct UNetCase {
    pub model: crate::unet::UNet,
    pub varmap: candle_nn::VarMap,
    pub device: Device,
}

impl UNetCase {
    pub fn new(config: &crate::unet::UNetConfig, device: &Device) -> Result<Self> {
        let varmap = candle_nn::VarMap::new();
        let vb = crate::params::SeededInit::var_builder(&varmap, 0, device);
        let model = crate::unet::UNet::new(config, vb)?;
        Ok(Self {
            model,
            varmap,
            device: device.clone(),
        })
    }

    /// Fixed random inputs for a batch: (x_t, t, cond, target ε).
    pub fn inputs(&self, batch: usize) -> Result<(Tensor, Vec<f64>, Tensor, Tensor)> {
        let cfg = &self.model.config;
        let mut r = rng::rng(batch as u64);
        let shape = (batch, cfg.in_channels, cfg.image_size, cfg.image_size);
        let x = rng::randn(&mut r, shape, &self.device)?;
        let eps = rng::randn(&mut r, shape, &self.device)?;
        let t: Vec<f64> = (0..batch).map(|i| ((i * 379) % 1000) as f64).collect();
        let ids: Vec<Vec<u32>> = (0..batch)
            .map(|i| {
                cfg.vocab
                    .slots
                    .iter()
                    .map(|s| (i % (s.words.len() + 1)) as u32)
                    .collect()
            })
            .collect();
        let cond = crate::unet::cond_tensor(&ids, &self.device)?;
        Ok((x, t, cond, eps))
    }

    /// One forward pass; returns the output so the work cannot be skipped.
    pub fn forward(&self, x: &Tensor, t: &[f64], cond: &Tensor) -> Result<Tensor> {
        Ok(self.model.forward(x, t, cond)?)
    }

    /// AdamW over the model's weights, as the trainer uses it.
    pub fn optimizer(&self) -> Result<crate::optim::AdamW> {
        let vars = self.varmap.data().lock().expect("varmap lock");
        let named = vars.iter().map(|(n, v)| (n.clone(), v.clone())).collect();
        Ok(crate::optim::AdamW::new(named, Default::default())?)
    }

    /// One training step (forward, MSE on ε, backward, AdamW at lr 1e-3); returns the loss.
    pub fn train_step(
        &self,
        opt: &mut crate::optim::AdamW,
        x: &Tensor,
        t: &[f64],
        cond: &Tensor,
        eps: &Tensor,
    ) -> Result<f32> {
        let pred = self.model.forward(x, t, cond)?;
        let loss = candle_nn::loss::mse(&pred, eps)?;
        opt.step(&loss.backward()?, 1e-3, 1.0)?;
        Ok(loss.to_scalar::<f32>()?)
    }
}

/// Median, minimum and maximum of repeated timings, in milliseconds.
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct Timing {
    pub median_ms: f64,
    pub min_ms: f64,
    pub max_ms: f64,
    pub runs: usize,
}

/// Times `f` `runs` times after `warmup` untimed calls.
pub fn time_it(warmup: usize, runs: usize, mut f: impl FnMut() -> Result<()>) -> Result<Timing> {
    for _ in 0..warmup {
        f()?;
    }
    let mut ms = Vec::with_capacity(runs);
    for _ in 0..runs.max(1) {
        let start = std::time::Instant::now();
        f()?;
        ms.push(start.elapsed().as_secs_f64() * 1e3);
    }
    ms.sort_by(|a, b| a.total_cmp(b));
    Ok(Timing {
        median_ms: ms[ms.len() / 2],
        min_ms: ms[0],
        max_ms: ms[ms.len() - 1],
        runs: ms.len(),
    })
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
            crate::kernels::sgemm(
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
    let sync = |t: &Tensor| -> Result<()> {
        // Reading one value waits for the device.
        t.flatten_all()?
            .get(0)?
            .to_dtype(candle_core::DType::F32)?
            .to_scalar::<f32>()?;
        Ok(())
    };
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
    use crate::fsutil;
    fsutil::create_dir(dir)?;
    let case = UNetCase::new(config, &Device::Cpu)?;
    let weights = dir.join("weights.safetensors");
    fsutil::write_atomic_via(&weights, |tmp| {
        case.varmap.save(tmp).map_err(crate::Error::from)
    })?;
    let json = serde_json::to_vec_pretty(config).expect("config serialises");
    fsutil::write_atomic(&dir.join("config.json"), &json)?;
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
    fsutil::save_tensors(&dir.join("parity.safetensors"), &tensors)
}

/// One row of the forward-noising / frame-output table.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ThroughputRow {
    pub name: String,
    pub timing: Timing,
    pub per_second: f64,
    pub unit: &'static str,
}

/// Times `q_sample` at 32×32 (batch 64) and 512×512, and PNG/GIF encoding of frames.
pub fn bench_forward(
    quick: bool,
    progress: &dyn crate::progress::Progress,
) -> Result<Vec<ThroughputRow>> {
    let runs = if quick { 5 } else { 20 };
    let frames = if quick { 10 } else { 50 };
    progress.stage("forward noising", 4);
    let mut rows = Vec::new();
    for (name, batch, side) in [
        ("q_sample 32x32, batch 64", 64, 32),
        ("q_sample 512x512, batch 1", 1, 512),
    ] {
        let case = QSampleCase::new(batch, side, side, &Device::Cpu)?;
        let timing = time_it(2, runs, || case.run().map(|_| ()))?;
        rows.push(ThroughputRow {
            name: name.into(),
            timing,
            per_second: case.images() as f64 / (timing.median_ms * 1e-3),
            unit: "images",
        });
        progress.advance(1);
    }
    let case = FrameCase::new(frames, 512, 512)?;
    let timing = time_it(1, runs.min(5), || case.encode_png().map(|_| ()))?;
    rows.push(ThroughputRow {
        name: format!("{frames} frames 512x512 -> PNG"),
        timing,
        per_second: frames as f64 / (timing.median_ms * 1e-3),
        unit: "frames",
    });
    progress.advance(1);
    let timing = time_it(0, if quick { 1 } else { 3 }, || {
        case.encode_gif().map(|_| ())
    })?;
    rows.push(ThroughputRow {
        name: format!("{frames} frames 512x512 -> GIF"),
        timing,
        per_second: frames as f64 / (timing.median_ms * 1e-3),
        unit: "frames",
    });
    progress.finish();
    Ok(rows)
}
