//! Training the autoencoder on the emoji scenes: encode, draw z from the posterior, decode,
//! and minimise L1 (+ an edge term on the pictures' differences) + a small KL term, with the
//! denoiser's AdamW, warm-up and cosine decay, clipping and EMA. A run continues exactly from
//! its checkpoint. The scaling factor is measured over training scenes when the model is
//! written. No printing, no files but the checkpoint and the model.

use std::collections::HashMap;
use std::path::Path;

use candle_core::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};
use serde::{Deserialize, Serialize};

use super::{AutoencoderKL, AutoencoderKLConfig};
use crate::data::emoji;
use crate::error::{Error, Result};
use crate::io::image::push_chw;
use crate::io::safetensors;
use crate::nn::init::SeededInit;
use crate::rng::{self, Rng};
use crate::train::checkpoint;
use crate::train::optim::{self, AdamW, AdamWConfig};
use crate::train::{fresh_state, StepStats, TrainRun};

/// Metadata key of an autoencoder model file.
pub const AUTOENCODER_KEY: &str = "diffuse_autoencoder";
/// Metadata key of an autoencoder training checkpoint.
pub const AUTOENCODER_CHECKPOINT_KEY: &str = "diffuse_autoencoder_checkpoint";
/// Training scenes the scaling factor is measured over.
pub const SCALE_SCENES: usize = 512;

/// How the autoencoder is trained.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AutoencoderTrainConfig {
    pub autoencoder: AutoencoderKLConfig,
    /// Seed of the initial weights and of the trainer's stream (posterior draws).
    pub seed: u64,
    /// Seed of the emoji scenes it trains on.
    pub data_seed: u64,
    pub steps: u64,
    pub batch_size: usize,
    pub lr: f64,
    pub warmup_steps: u64,
    pub lr_final_fraction: f64,
    pub adamw: AdamWConfig,
    pub grad_clip: f64,
    pub ema_decay: f64,
    /// Weight of the KL term (Stable Diffusion's autoencoder: about 1e-6).
    pub kl_weight: f64,
    /// Weight of the L1 distance between the pictures' horizontal and vertical differences,
    /// which keeps sprite edges sharp (0: L1 alone).
    pub edge_weight: f64,
    pub checkpoint_every: u64,
}

impl Default for AutoencoderTrainConfig {
    fn default() -> Self {
        Self {
            autoencoder: AutoencoderKLConfig::default(),
            seed: 0,
            data_seed: 7,
            steps: 4000,
            batch_size: 16,
            lr: 1e-3,
            warmup_steps: 200,
            lr_final_fraction: 0.05,
            adamw: AdamWConfig::default(),
            grad_clip: 1.0,
            ema_decay: 0.999,
            kl_weight: 1e-6,
            edge_weight: 0.5,
            checkpoint_every: 250,
        }
    }
}

impl AutoencoderTrainConfig {
    /// Checks the values a user can set, naming the option.
    pub fn validate(&self) -> Result<()> {
        self.autoencoder.validate()?;
        if self.autoencoder.sample_size != emoji::SIZE as usize {
            return Err(Error::option(
                "sample-size",
                self.autoencoder.sample_size,
                format!("the emoji scenes are {} px", emoji::SIZE),
            ));
        }
        if !(1..=10_000_000).contains(&self.steps) {
            return Err(Error::out_of_range("steps", self.steps, "1..=10000000"));
        }
        if !(1..=256).contains(&self.batch_size) {
            return Err(Error::out_of_range(
                "batch-size",
                self.batch_size,
                "1..=256",
            ));
        }
        for (name, v) in [("lr", self.lr), ("kl-weight", self.kl_weight)] {
            if !(v.is_finite() && v >= 0.0) || (name == "lr" && v == 0.0) {
                return Err(Error::option_is(name, v, "must be a number > 0"));
            }
        }
        if !(self.edge_weight.is_finite() && self.edge_weight >= 0.0) {
            return Err(Error::option_is(
                "edge-weight",
                self.edge_weight,
                "must be ≥ 0",
            ));
        }
        if self.checkpoint_every == 0 {
            return Err(Error::option("checkpoint-every", 0, "must be at least 1"));
        }
        Ok(())
    }
}

/// What an autoencoder model file says about its weights.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AutoencoderMeta {
    pub format: u32,
    pub autoencoder: AutoencoderKLConfig,
    pub trained_steps: u64,
    /// The scenes it was trained on: the data seed and the batch size.
    pub data_seed: u64,
    pub batch_size: usize,
}

type CheckpointMeta = checkpoint::CheckpointMeta<AutoencoderTrainConfig>;

/// The emoji scenes `start..start + count` of `seed` as `[count, 3, 64, 64]` in [-1, 1].
pub fn scenes(seed: u64, start: u64, count: usize, device: &Device) -> Result<Tensor> {
    let s = emoji::SIZE as usize;
    let mut x = Vec::with_capacity(count * 3 * s * s);
    for (_, img) in emoji::render_range(seed, start, count) {
        push_chw(&mut x, &img);
    }
    Ok(Tensor::from_vec(x, (count, 3, s, s), device)?)
}

/// The mean L1 distance between the horizontal and vertical differences of `a` and `b`
/// `[B, C, H, W]`: what sharpens edges beyond plain L1.
pub fn edge_l1(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    let d = (a - b)?; // [B, C, H, W]
    let (h, w) = (d.dim(2)?, d.dim(3)?);
    let dx = (d.narrow(3, 1, w - 1)? - d.narrow(3, 0, w - 1)?)?;
    let dy = (d.narrow(2, 1, h - 1)? - d.narrow(2, 0, h - 1)?)?;
    Ok(((dx.abs()?.mean_all()? + dy.abs()?.mean_all()?)? * 0.5)?)
}

/// An autoencoder training run in memory.
pub struct AutoencoderTrainer {
    pub config: AutoencoderTrainConfig,
    pub model: AutoencoderKL,
    pub varmap: VarMap,
    pub opt: AdamW,
    pub ema: HashMap<String, Tensor>,
    rng: Rng,
    pub step: u64,
    pub elapsed_before_s: f64,
    device: Device,
}

impl AutoencoderTrainer {
    /// A fresh run: weights from `config.seed`.
    pub fn new(config: AutoencoderTrainConfig, device: &Device) -> Result<Self> {
        config.validate()?;
        let varmap = VarMap::new();
        let vb = SeededInit::var_builder(&varmap, config.seed, device);
        let model = AutoencoderKL::new(&config.autoencoder, vb)?;
        let (opt, ema, trng) = fresh_state(&varmap, config.adamw, config.seed)?;
        Ok(Self {
            model,
            varmap,
            opt,
            ema,
            rng: trng,
            step: 0,
            elapsed_before_s: 0.0,
            device: device.clone(),
            config,
        })
    }

    /// Continues the run saved at `path`; `steps` may raise its total.
    pub fn resume(path: &Path, steps: Option<u64>, device: &Device) -> Result<Self> {
        let (meta, tensors): (CheckpointMeta, _) =
            safetensors::load_with_meta(path, AUTOENCODER_CHECKPOINT_KEY, device)?;
        let mut config = meta.config.clone();
        match steps {
            Some(s) if s <= meta.step => {
                let why = format!("is not past the checkpoint's step {}", meta.step);
                return Err(Error::option_is("steps", s, why));
            }
            Some(s) => config.steps = s,
            None if meta.step >= config.steps => {
                let why = format!("the run finished its {} steps; give --steps", config.steps);
                return Err(Error::file(path, why));
            }
            None => {}
        }
        let mut t = Self::new(config, device)?;
        checkpoint::restore_state(&mut t.opt, &mut t.ema, &tensors, path)?;
        t.opt.t = meta.adam_t;
        t.step = meta.step;
        t.rng = meta.rng.restore()?;
        t.elapsed_before_s = meta.elapsed_s;
        Ok(t)
    }

    /// The autoencoder with the EMA weights.
    pub fn ema_model(&self) -> Result<AutoencoderKL> {
        let vb = VarBuilder::from_tensors(self.ema.clone(), DType::F32, &self.device);
        Ok(AutoencoderKL::new(&self.config.autoencoder, vb)?)
    }
}

/// The loss of pictures `x` `[B, 3, S, S]`, `eps` drawing z from the posterior:
/// (total, L1, edge, KL).
fn losses(
    model: &AutoencoderKL,
    c: &AutoencoderTrainConfig,
    x: &Tensor,
    eps: &Tensor,
) -> Result<[Tensor; 4]> {
    let posterior = model.encode(x)?;
    let recon = model.decode(&posterior.sample(eps)?)?; // [B, 3, S, S]
    let l1 = (&recon - x)?.abs()?.mean_all()?;
    let edge = edge_l1(&recon, x)?;
    let kl = posterior.kl()?;
    let total = ((&l1 + (&edge * c.edge_weight)?)? + (&kl * c.kl_weight)?)?;
    Ok([total, l1, edge, kl])
}

/// 1 / the std of the posterior means of `SCALE_SCENES` training scenes (the first ones of
/// the run's stream): the scaling factor that gives the latents unit variance.
pub fn measure_scaling_factor(model: &AutoencoderKL, data_seed: u64) -> Result<f64> {
    let mut values: Vec<f32> = Vec::new();
    for start in (0..SCALE_SCENES).step_by(64) {
        let x = scenes(data_seed, start as u64, 64, model.device())?;
        let mean = crate::nn::in_pool(|| model.encode(&x).map(|p| p.mean))?; // [64, 4, h, w]
        values.extend(mean.flatten_all()?.to_vec1::<f32>()?);
    }
    let n = values.len() as f64;
    let mu = values.iter().map(|&v| v as f64).sum::<f64>() / n;
    let var = values.iter().map(|&v| (v as f64 - mu).powi(2)).sum::<f64>() / n;
    Ok(1.0 / var.sqrt().max(1e-12))
}

impl TrainRun for AutoencoderTrainer {
    fn step(&self) -> u64 {
        self.step
    }

    fn total_steps(&self) -> u64 {
        self.config.steps
    }

    fn checkpoint_every(&self) -> u64 {
        self.config.checkpoint_every
    }

    fn elapsed_before_s(&self) -> f64 {
        self.elapsed_before_s
    }

    fn train_step(&mut self) -> Result<StepStats> {
        let c = self.config.clone();
        let start = self.step * c.batch_size as u64;
        let x = scenes(c.data_seed, start, c.batch_size, &self.device)?; // [B, 3, 64, 64]
        let (z, h) = (c.autoencoder.latent_channels, c.autoencoder.latent_size());
        let eps = rng::randn(&mut self.rng, (c.batch_size, z, h, h), &self.device)?;
        let lr = optim::lr_at(
            self.step,
            c.steps,
            c.warmup_steps,
            c.lr,
            c.lr_final_fraction,
        );
        // Forward, backward and the update on one of rayon's threads (see nn::in_pool).
        let (model, opt, ema, step) = (&self.model, &mut self.opt, &mut self.ema, self.step);
        let (losses, norm) = crate::nn::in_pool(|| -> Result<_> {
            let losses = losses(model, &c, &x, &eps)?;
            let norm = opt.step_clipped(&losses[0].backward()?, lr, c.grad_clip)?;
            opt.update_ema(ema, step, c.ema_decay)?;
            Ok((losses, norm))
        })?;
        self.step += 1;
        let [total, l1, edge, kl] = losses.map(|l| l.to_scalar::<f32>().unwrap_or(f32::NAN));
        Ok(StepStats {
            step: self.step,
            loss: total,
            lr,
            grad_norm: norm,
            parts: vec![("l1", l1), ("edge", edge), ("kl", kl)],
        })
    }

    fn save_checkpoint(&self, path: &Path, elapsed_s: f64) -> Result<()> {
        let meta = CheckpointMeta::of(
            self.config.clone(),
            self.step,
            &self.opt,
            &self.rng,
            elapsed_s,
        );
        meta.save(path, AUTOENCODER_CHECKPOINT_KEY, &self.opt, &self.ema)
    }

    /// The EMA weights with their config, the scaling factor measured on them.
    fn save_model(&self, path: &Path) -> Result<()> {
        let mut autoencoder = self.config.autoencoder.clone();
        autoencoder.scaling_factor =
            measure_scaling_factor(&self.ema_model()?, self.config.data_seed)?;
        let meta = AutoencoderMeta {
            format: 1,
            autoencoder,
            trained_steps: self.step,
            data_seed: self.config.data_seed,
            batch_size: self.config.batch_size,
        };
        safetensors::save_with_meta(path, &self.ema, AUTOENCODER_KEY, &meta)
    }
}

/// Loads an autoencoder model file written by `diffuse train-autoencoder`.
pub fn load_autoencoder(path: &Path, device: &Device) -> Result<(AutoencoderMeta, AutoencoderKL)> {
    let (meta, tensors): (AutoencoderMeta, _) =
        safetensors::load_with_meta(path, AUTOENCODER_KEY, device)?;
    meta.autoencoder
        .validate()
        .map_err(|e| Error::file(path, format!("invalid config metadata: {e}")))?;
    let vb = VarBuilder::from_tensors(tensors, DType::F32, device);
    let model = AutoencoderKL::new(&meta.autoencoder, vb).map_err(|e| {
        let e = crate::error::one_line(&e);
        Error::file(path, format!("weights do not match the config: {e}"))
    })?;
    Ok((meta, model))
}
