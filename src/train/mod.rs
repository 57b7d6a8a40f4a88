//! Training the denoiser (Ho et al. 2020, Algorithm 1): sample x0 and its prompt, a timestep
//! and ε, predict ε (or v) from x_t, minimise the MSE. AdamW with warm-up and cosine decay,
//! gradient clipping, an EMA of the weights, and condition dropout for classifier-free
//! guidance. A run continues exactly from a checkpoint ([`checkpoint`]); its settings live in
//! [`config`], the optimiser in [`optim`]. This module never prints or draws: the loop in
//! `jobs::train` logs, plots and previews from the returned statistics.

pub mod checkpoint;
pub mod config;
pub mod latent;
pub mod optim;

use std::collections::HashMap;
use std::path::Path;

use candle_core::{DType, Device, Tensor, Var};
use candle_nn::{VarBuilder, VarMap};
use rand::Rng as _;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use crate::data::folder::FolderDataset;
use crate::data::{emoji, shapes};
use crate::error::{Error, Result};
use crate::io::image::push_chw;
use crate::io::safetensors;
use crate::model::{ModelMeta, MODEL_KEY};
use crate::nn::init::SeededInit;
use crate::rng::{self, Rng};
use crate::schedule::NoiseSchedule;

use crate::unet::{Prediction, UNet};
pub use checkpoint::{CheckpointMeta, RngState, CHECKPOINT_KEY};
pub use config::{DataSource, TrainConfig};
use optim::AdamW;

/// Settings a resumed run may change: how often it checkpoints and previews.
#[derive(Debug, Clone, Copy, Default)]
pub struct RunOverrides {
    pub checkpoint_every: Option<u64>,
    pub preview_steps: Option<usize>,
}

impl RunOverrides {
    /// Replaces the given settings in `config`.
    pub fn apply(&self, config: &mut TrainConfig) {
        if let Some(n) = self.checkpoint_every {
            config.checkpoint_every = n;
        }
        if let Some(n) = self.preview_steps {
            config.preview_steps = n;
        }
    }
}

/// Statistics of one step.
#[derive(Debug, Clone)]
pub struct StepStats {
    pub step: u64,
    pub loss: f32,
    pub lr: f64,
    pub grad_norm: f64,
    /// The loss's named terms, where it has several (the autoencoder's L1, edge and KL).
    pub parts: Vec<(&'static str, f32)>,
}

/// What the training loop (`jobs::train`) drives: the denoiser's trainer or the
/// autoencoder's. Each step is exact on resume.
pub trait TrainRun {
    /// Steps done.
    fn step(&self) -> u64;
    fn total_steps(&self) -> u64;
    fn checkpoint_every(&self) -> u64;
    /// Wall time of earlier sessions of the run, in seconds.
    fn elapsed_before_s(&self) -> f64;
    fn train_step(&mut self) -> Result<StepStats>;
    /// The full state, to continue exactly.
    fn save_checkpoint(&self, path: &Path, elapsed_s: f64) -> Result<()>;
    /// The weights to ship, with their config.
    fn save_model(&self, path: &Path) -> Result<()>;
}

impl TrainRun for Trainer {
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
        Trainer::train_step(self)
    }
    fn save_checkpoint(&self, path: &Path, elapsed_s: f64) -> Result<()> {
        Trainer::save_checkpoint(self, path, elapsed_s)
    }
    fn save_model(&self, path: &Path) -> Result<()> {
        Trainer::save_model(self, path)
    }
}

/// A training run in memory.
pub struct Trainer {
    pub config: TrainConfig,
    pub model: UNet,
    pub varmap: VarMap,
    pub opt: AdamW,
    /// EMA of every weight, by name.
    pub ema: HashMap<String, Tensor>,
    pub schedule: NoiseSchedule,
    rng: Rng,
    pub step: u64,
    /// Wall time of earlier sessions of this run, in seconds.
    pub elapsed_before_s: f64,
    /// The pictures of a folder dataset (None for shapes).
    pub folder: Option<std::sync::Arc<FolderDataset>>,
    /// The frozen autoencoder of a latent run.
    pub latents: Option<latent::LatentSpace>,
    device: Device,
}

/// The variables of `varmap` by name, sorted (the optimiser's fixed order).
pub fn named_vars(varmap: &VarMap) -> Result<Vec<(String, Var)>> {
    let data = varmap.data().lock().map_err(|_| Error::Process {
        what: "trainer".into(),
        reason: "the VarMap lock is poisoned".into(),
    })?;
    let mut v: Vec<(String, Var)> = data.iter().map(|(n, v)| (n.clone(), v.clone())).collect();
    v.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(v)
}

/// A fresh run's optimiser over the variables of `varmap`, their EMA (a copy of the initial
/// weights), and the trainer's RNG: seeded with `seed` on a stream of its own, apart from the
/// weight-init stream.
pub fn fresh_state(
    varmap: &VarMap,
    adamw: optim::AdamWConfig,
    seed: u64,
) -> Result<(AdamW, HashMap<String, Tensor>, Rng)> {
    let vars = named_vars(varmap)?;
    let ema = vars
        .iter()
        .map(|(n, v)| Ok((n.clone(), v.as_tensor().copy()?)))
        .collect::<Result<HashMap<_, _>>>()?;
    let opt = AdamW::new(vars, adamw)?;
    let mut trng = ChaCha8Rng::seed_from_u64(seed);
    trng.set_stream(1);
    Ok((opt, ema, trng))
}

impl Trainer {
    /// A fresh run: weights from `config.seed`. For a folder dataset the pictures are loaded
    /// and the vocabulary becomes the folder's classes.
    pub fn new(mut config: TrainConfig, device: &Device) -> Result<Self> {
        config.validate()?;
        let folder = match &config.data {
            DataSource::Shapes | DataSource::Emoji => None,
            DataSource::Folder(dir) => {
                let ds = FolderDataset::load(dir, config.unet.image_size)?;
                config.unet.vocab = ds.vocabulary();
                Some(std::sync::Arc::new(ds))
            }
        };
        let latents = match &config.autoencoder {
            Some(path) => Some(latent::LatentSpace::load(path, &config.unet, device)?),
            None => None,
        };
        let varmap = VarMap::new();
        let model = UNet::new(
            &config.unet,
            SeededInit::var_builder(&varmap, config.seed, device),
        )?;
        let (opt, ema, trng) = fresh_state(&varmap, config.adamw, config.seed)?;
        Ok(Self {
            schedule: NoiseSchedule::new(config.schedule)?,
            model,
            varmap,
            opt,
            ema,
            rng: trng,
            step: 0,
            elapsed_before_s: 0.0,
            folder,
            latents,
            device: device.clone(),
            config,
        })
    }

    /// Continues the run saved at `path`. `steps` may raise the total step count; the other
    /// `overrides` (how often to checkpoint, preview steps) replace the stored ones.
    pub fn resume(
        path: &Path,
        steps: Option<u64>,
        overrides: RunOverrides,
        device: &Device,
    ) -> Result<Self> {
        let (meta, tensors): (CheckpointMeta, _) =
            safetensors::load_with_meta(path, CHECKPOINT_KEY, device)?;
        let mut config = meta.config.clone();
        if let Some(s) = steps {
            if s <= meta.step {
                return Err(Error::option_is(
                    "steps",
                    s,
                    format!(
                        "is not past the checkpoint's step {}: nothing to train (give a larger total)",
                        meta.step
                    ),
                ));
            }
            config.steps = s;
        } else if meta.step >= config.steps {
            return Err(Error::file(
                path,
                format!(
                    "the run already finished its {} steps; give --steps to extend it",
                    config.steps
                ),
            ));
        }
        overrides.apply(&mut config);
        config.validate()?;
        let mut t = Self::new(config, device)?;
        if t.config.unet.vocab != meta.config.unet.vocab {
            return Err(Error::file(
                path,
                "the data folder's classes changed since the checkpoint was written",
            ));
        }
        checkpoint::restore_state(&mut t.opt, &mut t.ema, &tensors, path)?;
        t.opt.t = meta.adam_t;
        t.step = meta.step;
        t.rng = meta.rng.restore()?;
        t.elapsed_before_s = meta.elapsed_s;
        Ok(t)
    }

    /// The batch of the current step: x0 `[B, C, S, S]` (the pictures, or their latents in
    /// a latent run) and clean condition ids per image.
    fn batch(&self) -> Result<(Tensor, Vec<Vec<u32>>)> {
        let (x, ids) = self.pictures()?; // [B, 3, S, S]
        match &self.latents {
            Some(l) => Ok((l.encode(&x)?, ids)), // [B, 4, S/f, S/f]
            None => Ok((x, ids)),
        }
    }

    /// The exact stream of scenes this run has trained on so far (procedural data only).
    pub fn data_stream(&self) -> Option<crate::nearest::DataStream> {
        let data = match self.config.data {
            DataSource::Emoji => crate::nearest::StreamData::Emoji,
            DataSource::Shapes => crate::nearest::StreamData::Shapes,
            DataSource::Folder(_) => return None,
        };
        Some(crate::nearest::DataStream {
            data,
            data_seed: self.config.data_seed,
            batch_size: self.config.batch_size,
            steps: self.step,
        })
    }

    /// The pictures of the current step `[B, 3, S, S]` and their condition ids: what the
    /// data loader feeds the step.
    pub fn pictures(&self) -> Result<(Tensor, Vec<Vec<u32>>)> {
        let b = self.config.batch_size;
        let start = self.step * b as u64;
        let s = match &self.latents {
            Some(l) => l.autoencoder.config.sample_size,
            None => self.config.unet.image_size,
        };
        let mut x = Vec::with_capacity(b * 3 * s * s);
        let mut ids = Vec::with_capacity(b);
        match (&self.folder, &self.config.data) {
            (Some(ds), _) => {
                for i in ds.indices(self.config.data_seed, start, b) {
                    x.extend_from_slice(&ds.images[i]);
                    ids.push(ds.labels[i].into_iter().collect());
                }
            }
            (None, DataSource::Emoji) => {
                for (scene, img) in emoji::render_range(self.config.data_seed, start, b) {
                    push_chw(&mut x, &img);
                    ids.push(crate::prompt::encode(&scene.caption(), &self.config.unet)?);
                }
            }
            (None, _) => {
                for (spec, img) in shapes::render_range(self.config.data_seed, start, b) {
                    push_chw(&mut x, &img);
                    ids.push(vec![spec.colour as u32, spec.shape as u32]);
                }
            }
        }
        Ok((Tensor::from_vec(x, (b, 3, s, s), &self.device)?, ids))
    }

    /// One optimisation step.
    pub fn train_step(&mut self) -> Result<StepStats> {
        let cfg = self.config.clone();
        let b = cfg.batch_size;
        let (x0, ids) = self.batch()?; // [B, 3, 32, 32]
        let nulls = crate::prompt::null_ids(&cfg.unet);
        // Text models drop the whole caption; slot models also drop single words.
        let text = cfg.unet.text.is_some();
        let mut cond = Vec::with_capacity(b * nulls.len());
        for id in &ids {
            let drop_all = self.rng.random::<f64>() < cfg.cond_drop;
            for (slot, &null) in nulls.iter().enumerate() {
                let drop = drop_all || (!text && self.rng.random::<f64>() < cfg.slot_drop);
                cond.push(if drop { null } else { id[slot] });
            }
        }
        let cond = Tensor::from_vec(cond, (b, nulls.len()), &self.device)?;
        let t: Vec<usize> = (0..b)
            .map(|_| self.rng.random_range(0..self.schedule.len()))
            .collect();
        let eps = rng::randn(&mut self.rng, x0.shape().clone(), &self.device)?; // [B, 3, 32, 32]
        let x_t = self.schedule.q_sample(&x0, &t, &eps)?;
        let target = match cfg.unet.prediction {
            Prediction::Epsilon => eps,
            // v = √ᾱ·ε − √(1−ᾱ)·x0, which is q_sample with the roles of x0 and ε swapped.
            Prediction::VPrediction => self.schedule.q_sample(&eps, &t, &x0.neg()?)?,
        };
        let tf: Vec<f64> = t.iter().map(|&v| v as f64).collect();
        let lr = optim::lr_at(
            self.step,
            cfg.steps,
            cfg.warmup_steps,
            cfg.lr,
            cfg.lr_final_fraction,
        );
        // Forward, backward and the update on one of rayon's threads (see nn::in_pool).
        let weights = match cfg.snr_gamma {
            Some(g) => Some(latent::min_snr_weights(
                &self.schedule,
                &t,
                g,
                cfg.unet.prediction,
                &self.device,
            )?),
            None => None,
        };
        let (model, opt, ema, step) = (&self.model, &mut self.opt, &mut self.ema, self.step);
        let (loss, norm) = crate::nn::in_pool(|| -> Result<(Tensor, f64)> {
            let pred = model.forward(&x_t, &tf, &cond)?;
            let loss = match &weights {
                Some(w) => latent::weighted_mse(&pred, &target, w)?,
                None => candle_nn::loss::mse(&pred, &target)?,
            };
            let norm = opt.step_clipped(&loss.backward()?, lr, cfg.grad_clip)?;
            opt.update_ema(ema, step, cfg.ema_decay)?;
            Ok((loss, norm))
        })?;
        self.step += 1;
        Ok(StepStats {
            step: self.step,
            loss: loss.to_scalar::<f32>()?,
            lr,
            grad_norm: norm,
            parts: Vec::new(),
        })
    }

    /// Writes the full state (weights, EMA, AdamW moments, step, RNG, config) atomically.
    pub fn save_checkpoint(&self, path: &Path, elapsed_s: f64) -> Result<()> {
        let meta = CheckpointMeta::of(
            self.config.clone(),
            self.step,
            &self.opt,
            &self.rng,
            elapsed_s,
        );
        meta.save(path, CHECKPOINT_KEY, &self.opt, &self.ema)
    }

    /// Writes the EMA weights as a model file, with its config and schedule in the metadata.
    pub fn save_model(&self, path: &Path) -> Result<()> {
        let meta = ModelMeta {
            format: crate::model::MODEL_FORMAT,
            unet: self.config.unet.clone(),
            schedule: self.config.schedule,
            trained_steps: self.step,
            sampling: None,
            autoencoder: self.latents.as_ref().map(|l| l.autoencoder.config.clone()),
            data: self.data_stream(),
        };
        match &self.latents {
            Some(l) => {
                let mut tensors = self.ema.clone();
                tensors.extend(l.prefixed_tensors());
                safetensors::save_with_meta(path, &tensors, MODEL_KEY, &meta)
            }
            None => safetensors::save_with_meta(path, &self.ema, MODEL_KEY, &meta),
        }
    }

    /// Pictures `[B, 3, S, S]` from what the denoiser makes: decoded latents in a latent run.
    pub fn decode(&self, x: &Tensor) -> Result<Tensor> {
        match &self.latents {
            Some(l) => Ok(l.autoencoder.from_latents(x)?),
            None => Ok(x.clone()),
        }
    }

    /// The network with the EMA weights, for previews.
    pub fn ema_model(&self) -> Result<UNet> {
        let vb = VarBuilder::from_tensors(self.ema.clone(), DType::F32, &self.device);
        UNet::new(&self.config.unet, vb)
    }
}
