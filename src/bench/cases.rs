//! The benchmark workloads: each is built once, then run repeatedly by `diffuse bench` and by
//! the criterion benches.

use candle_core::{Device, Tensor};
use image::RgbImage;
use rayon::prelude::*;

use crate::defaults::SamplingDefaults;
use crate::error::Result;
use crate::forward;
use crate::jobs::generate;
use crate::model::LoadedModel;
use crate::pipeline;
use crate::render::{self, animation::FrameCount};
use crate::rng;
use crate::run::{Run, RunRequest, Start};
use crate::sampler::{self, SamplerConfig, SamplerKind};
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
            .map(|t| render::to_rgb8(&schedule.q_sample(&x0, &[t], &noise)?.squeeze(0)?))
            .collect::<Result<Vec<_>>>()?;
        Ok(Self { frames })
    }

    /// All frames to PNG bytes, in parallel on rayon's pool. Returns the total bytes.
    pub fn encode_png(&self) -> Result<usize> {
        let sizes = self
            .frames
            .par_iter()
            .map(|f| render::png_bytes(f).map(|b| b.len()))
            .collect::<Result<Vec<_>>>()?;
        Ok(sizes.iter().sum())
    }

    /// All frames to one looping GIF. Returns its size in bytes.
    pub fn encode_gif(&self) -> Result<usize> {
        Ok(render::animation::gif_bytes(&self.frames, 12.0)?.len())
    }
}

/// The denoiser on random inputs: forward passes and a full training step
/// (forward + MSE on ε + backward + AdamW), the workload `diffuse bench --model-only` times.
pub struct UNetCase {
    /// The network on the trainer's variables: every op records the graph for backward.
    pub model: crate::unet::UNet,
    /// The same weights as plain tensors (shared storage), as a loaded model holds them:
    /// what sampling runs, with nothing recorded.
    pub inference: crate::unet::UNet,
    pub varmap: candle_nn::VarMap,
    pub device: Device,
}

impl UNetCase {
    pub fn new(config: &crate::unet::UNetConfig, device: &Device) -> Result<Self> {
        let varmap = candle_nn::VarMap::new();
        let vb = crate::nn::init::SeededInit::var_builder(&varmap, 0, device);
        let model = crate::unet::UNet::new(config, vb)?;
        let weights: std::collections::HashMap<String, Tensor> = crate::train::named_vars(&varmap)?
            .into_iter()
            .map(|(name, var)| (name, var.as_tensor().detach()))
            .collect();
        let vb = candle_nn::VarBuilder::from_tensors(weights, candle_core::DType::F32, device);
        let inference = crate::unet::UNet::new(config, vb)?;
        Ok(Self {
            model,
            inference,
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
        let cond = crate::unet::cond_tensor(&self.cond_ids(batch), &self.device)?;
        Ok((x, t, cond, eps))
    }

    /// The condition ids of [`inputs`](Self::inputs): image i takes word i of every slot
    /// (cycling through the null token).
    /// For a text model: the preview captions in turn.
    pub fn cond_ids(&self, batch: usize) -> Vec<Vec<u32>> {
        let config = &self.model.config;
        if config.text.is_some() {
            let captions = crate::data::emoji::preview_captions();
            return (0..batch)
                .map(|i| {
                    crate::prompt::encode(&captions[i % captions.len()], config)
                        .unwrap_or_else(|_| crate::prompt::null_ids(config))
                })
                .collect();
        }
        let vocab = &config.vocab;
        (0..batch)
            .map(|i| {
                vocab
                    .slots
                    .iter()
                    .map(|s| (i % (s.words.len() + 1)) as u32)
                    .collect()
            })
            .collect()
    }

    /// One forward pass as sampling runs it (no graph recorded); returns the output so the
    /// work cannot be skipped.
    pub fn forward(&self, x: &Tensor, t: &[f64], cond: &Tensor) -> Result<Tensor> {
        Ok(self.inference.forward(x, t, cond)?)
    }

    /// AdamW over the model's weights, as the trainer uses it.
    pub fn optimizer(&self) -> Result<crate::train::optim::AdamW> {
        let named = crate::train::named_vars(&self.varmap)?;
        Ok(crate::train::optim::AdamW::new(named, Default::default())?)
    }

    /// One training step (forward, MSE on ε, backward, AdamW at lr 1e-3); returns the loss.
    pub fn train_step(
        &self,
        opt: &mut crate::train::optim::AdamW,
        x: &Tensor,
        t: &[f64],
        cond: &Tensor,
        eps: &Tensor,
    ) -> Result<f32> {
        crate::nn::in_pool(|| {
            let pred = self.model.forward(x, t, cond)?;
            let loss = candle_nn::loss::mse(&pred, eps)?;
            opt.step(&loss.backward()?, 1e-3, 1.0)?;
            Ok(loss.to_scalar::<f32>()?)
        })
    }
}

/// A sampler's own work per step with a stand-in model (a fixed ε): x0 prediction,
/// thresholding, noise draws and the update, exactly the reverse loop `generate` runs.
pub struct SamplerCase {
    pub schedule: NoiseSchedule,
    pub config: SamplerConfig,
    pub x: Tensor,
    pub eps: Tensor,
}

impl SamplerCase {
    pub fn new(kind: SamplerKind, steps: usize, batch: usize, device: &Device) -> Result<Self> {
        let schedule = NoiseSchedule::new(ScheduleConfig::default())?;
        let mut r = rng::rng(2);
        let x = rng::randn(&mut r, (batch, 3, 32, 32), device)?;
        let eps = rng::randn(&mut r, (batch, 3, 32, 32), device)?.affine(0.9, 0.0)?;
        Ok(Self {
            schedule,
            config: SamplerConfig {
                thresholding: true,
                ..SamplerConfig::new(kind, steps)
            },
            x,
            eps,
        })
    }

    /// One whole reverse pass; returns the final sample.
    pub fn run(&self) -> Result<Tensor> {
        let mut s = sampler::build(&self.config, &self.schedule)?;
        let mut r = rng::rng(3);
        let predict = |_: &Tensor, _: usize| Ok(self.eps.clone());
        pipeline::denoise_with(predict, s.as_mut(), &mut r, 0, self.x.clone(), |_| {})
    }
}

/// The prompt the benchmarks generate: the course page's "a cat with a computer" for a text
/// model, the first word of every slot for a slot model ("red circle").
pub fn benchmark_prompt(model: &LoadedModel) -> String {
    let config = &model.meta.unet;
    match &config.text {
        Some(_) => crate::data::emoji::caption(0, Some((crate::data::emoji::Relation::With, 2))),
        None => config
            .vocab
            .slots
            .iter()
            .map(|s| s.words[0].as_str())
            .collect::<Vec<_>>()
            .join(" "),
    }
}

/// End-to-end generation with a trained model at `diffuse generate`'s default sampler and
/// guidance: sampling alone, or the whole `generate` job writing every frame, the GIF, the
/// strip and the samples into `out`.
pub struct GenerateCase<'a> {
    pub model: &'a LoadedModel,
    pub images: usize,
    pub steps: usize,
    pub out: std::path::PathBuf,
}

impl GenerateCase<'_> {
    fn sampler_config(&self) -> SamplerConfig {
        let kind = self.model.defaults().sampler;
        self.model.default_sampler(kind, self.steps)
    }

    /// The benchmarked prompt ([`benchmark_prompt`]).
    pub fn prompt(&self) -> String {
        benchmark_prompt(self.model)
    }

    /// Sampling only: noise to final images (as 8-bit pictures), nothing written.
    pub fn sample(&self, seed: u64) -> Result<Vec<RgbImage>> {
        let request = RunRequest {
            prompt: self.prompt(),
            negative_prompt: None,
            sampler: self.sampler_config(),
            guidance: self.model.defaults().guidance,
            seed,
            num_images: self.images,
            axis: None,
            start_step: 0,
            attention_steps: Vec::new(),
        };
        let mut run = Run::new(self.model, &request, &Start::Noise)?;
        while run.step()?.is_some() {}
        let x = run.finish()?.remove(0); // [K, 3, H, W]
        (0..self.images)
            .map(|i| render::to_rgb8(&x.get(i)?))
            .collect()
    }

    /// The `generate` job with every frame written; returns its report.
    pub fn generate(&self, seed: u64) -> Result<generate::GenerateReport> {
        let opts = generate::GenerateOptions {
            prompt: self.prompt(),
            negative_prompt: None,
            num_images: self.images,
            sampler: self.sampler_config(),
            guidance: self.model.defaults().guidance,
            seed,
            out: self.out.clone(),
            frames: FrameCount::All,
            x0_row: true,
            scale: None,
            fps: SamplingDefaults::LIBRARY.fps,
            save_tensors: false,
            force: true,
            init_image: None,
            attention_maps: None,
            inpaint: None,
            show_noise: false,
            from_noise: None,
            nearest: None,
            start_step: None,
        };
        generate::run(self.model, &opts, &crate::progress::Silent)
    }
}
