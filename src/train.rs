//! Training the denoiser (Ho et al. 2020, Algorithm 1): sample x0 and its prompt, a timestep
//! and ε, predict ε (or v) from x_t, minimise the MSE. AdamW with warm-up and cosine decay,
//! gradient clipping, an EMA of the weights, and condition dropout for classifier-free
//! guidance. A run continues exactly from a checkpoint. This module never prints: the loop
//! in the CLI reports through the returned statistics.

use std::collections::HashMap;
use std::path::Path;

use candle_core::{DType, Device, Tensor, Var};
use candle_nn::{VarBuilder, VarMap};
use rand::Rng as _;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::checkpoint::{self, ModelMeta, CHECKPOINT_KEY, MODEL_KEY};
use crate::data::folder::FolderDataset;
use crate::data::shapes;
use crate::error::{Error, Result};
use crate::optim::{self, AdamW, AdamWConfig};
use crate::params::SeededInit;
use crate::rng::{self, Rng};
use crate::schedule::{NoiseSchedule, ScheduleConfig};
use crate::unet::{Prediction, UNet, UNetConfig};

/// Where training images come from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum DataSource {
    /// The procedural shapes dataset.
    #[default]
    Shapes,
    /// A folder of pictures: class subfolders (conditional) or flat (unconditional).
    Folder(std::path::PathBuf),
}

/// Everything that defines a training run. Saved in every checkpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainConfig {
    /// The training images.
    #[serde(default)]
    pub data: DataSource,
    pub unet: UNetConfig,
    pub schedule: ScheduleConfig,
    /// Seed of the initial weights and of the trainer's noise/timestep/dropout stream.
    pub seed: u64,
    /// Seed of the shapes dataset (image i of step s is index s·batch + i).
    pub data_seed: u64,
    /// Total optimisation steps (the cosine schedule ends here).
    pub steps: u64,
    pub batch_size: usize,
    /// Peak learning rate.
    pub lr: f64,
    /// Linear warm-up steps.
    pub warmup_steps: u64,
    /// The learning rate decays to `lr · lr_final_fraction`.
    pub lr_final_fraction: f64,
    pub adamw: AdamWConfig,
    /// Clip the global gradient norm to this.
    pub grad_clip: f64,
    /// EMA decay (warmed up as min(decay, (1+n)/(10+n))).
    pub ema_decay: f64,
    /// Probability of dropping the whole prompt (trains the unconditional branch for CFG).
    pub cond_drop: f64,
    /// Probability of dropping each slot on its own (so "red" or "circle" alone works).
    pub slot_drop: f64,
}

impl Default for TrainConfig {
    fn default() -> Self {
        Self {
            data: DataSource::Shapes,
            unet: UNetConfig::default(),
            schedule: ScheduleConfig::default(),
            seed: 0,
            data_seed: 1,
            steps: 10_000,
            batch_size: 64,
            lr: 2e-3,
            warmup_steps: 200,
            lr_final_fraction: 0.05,
            adamw: AdamWConfig::default(),
            grad_clip: 1.0,
            ema_decay: 0.999,
            cond_drop: 0.1,
            slot_drop: 0.1,
        }
    }
}

impl TrainConfig {
    /// Checks the values a user can set.
    pub fn validate(&self) -> Result<()> {
        if self.steps == 0 {
            return Err(Error::invalid("--steps 0: train for at least one step"));
        }
        if self.batch_size == 0 {
            return Err(Error::invalid(
                "--batch-size 0: a batch needs at least one image",
            ));
        }
        if !(self.lr > 0.0 && self.lr < 1.0) {
            return Err(Error::invalid(format!(
                "--lr {} is out of range (0, 1)",
                self.lr
            )));
        }
        for (flag, p) in [("cond_drop", self.cond_drop), ("slot_drop", self.slot_drop)] {
            if !(0.0..1.0).contains(&p) {
                return Err(Error::invalid(format!("{flag} {p} is out of range [0, 1)")));
            }
        }
        self.unet.validate().map_err(Error::invalid)?;
        NoiseSchedule::new(self.schedule)?;
        Ok(())
    }
}

/// The RNG's position, so a resumed run draws exactly the numbers it would have.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RngState {
    pub seed: Vec<u8>,
    pub stream: u64,
    /// u128 as a decimal string (JSON numbers cannot hold it).
    pub word_pos: String,
}

impl RngState {
    fn of(r: &Rng) -> Self {
        Self {
            seed: r.get_seed().to_vec(),
            stream: r.get_stream(),
            word_pos: r.get_word_pos().to_string(),
        }
    }

    fn restore(&self) -> Result<Rng> {
        let seed: [u8; 32] = self
            .seed
            .clone()
            .try_into()
            .map_err(|_| Error::invalid("checkpoint RNG seed is not 32 bytes"))?;
        let mut r = ChaCha8Rng::from_seed(seed);
        r.set_stream(self.stream);
        r.set_word_pos(
            self.word_pos
                .parse()
                .map_err(|_| Error::invalid("checkpoint RNG position is not a number"))?,
        );
        Ok(r)
    }
}

/// The metadata of a checkpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckpointMeta {
    pub format: u32,
    pub config: TrainConfig,
    /// Steps completed.
    pub step: u64,
    /// AdamW's step counter.
    pub adam_t: u64,
    pub rng: RngState,
    /// Wall time spent training so far, in seconds, across resumes.
    #[serde(default)]
    pub elapsed_s: f64,
}

/// Statistics of one step.
#[derive(Debug, Clone, Copy)]
pub struct StepStats {
    pub step: u64,
    pub loss: f32,
    pub lr: f64,
    pub grad_norm: f64,
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
    device: Device,
}

fn named_vars(varmap: &VarMap) -> Vec<(String, Var)> {
    let data = varmap.data().lock().expect("varmap lock");
    let mut v: Vec<(String, Var)> = data.iter().map(|(n, v)| (n.clone(), v.clone())).collect();
    v.sort_by(|a, b| a.0.cmp(&b.0));
    v
}

impl Trainer {
    /// A fresh run: weights from `config.seed`. For a folder dataset the pictures are loaded
    /// and the vocabulary becomes the folder's classes.
    pub fn new(mut config: TrainConfig, device: &Device) -> Result<Self> {
        config.validate()?;
        let folder = match &config.data {
            DataSource::Shapes => None,
            DataSource::Folder(dir) => {
                let ds = FolderDataset::load(dir, config.unet.image_size)?;
                config.unet.vocab = ds.vocabulary();
                Some(std::sync::Arc::new(ds))
            }
        };
        let varmap = VarMap::new();
        let model = UNet::new(
            &config.unet,
            SeededInit::var_builder(&varmap, config.seed, device),
        )?;
        let vars = named_vars(&varmap);
        let ema = vars
            .iter()
            .map(|(n, v)| Ok((n.clone(), v.as_tensor().copy()?)))
            .collect::<Result<HashMap<_, _>>>()?;
        let opt = AdamW::new(vars, config.adamw)?;
        // The trainer's stream is separate from the weight-init stream.
        let mut trng = ChaCha8Rng::seed_from_u64(config.seed);
        trng.set_stream(1);
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
            device: device.clone(),
            config,
        })
    }

    /// Continues the run saved at `path`. `steps` may raise the total step count.
    pub fn resume(path: &Path, steps: Option<u64>, device: &Device) -> Result<Self> {
        let (meta, tensors): (CheckpointMeta, _) =
            checkpoint::load_with_meta(path, CHECKPOINT_KEY, device)?;
        let mut config = meta.config.clone();
        if let Some(s) = steps {
            config.steps = s;
        }
        let mut t = Self::new(config, device)?;
        if t.config.unet.vocab != meta.config.unet.vocab {
            return Err(Error::invalid(format!(
                "'{}': the data folder's classes changed since the checkpoint was written",
                path.display()
            )));
        }
        let get = |prefix: &str, name: &str| -> Result<Tensor> {
            tensors
                .get(&format!("{prefix}.{name}"))
                .cloned()
                .ok_or_else(|| {
                    Error::invalid(format!(
                        "'{}' lacks tensor {prefix}.{name}: the checkpoint is from a different config",
                        path.display()
                    ))
                })
        };
        let check = |name: &str, a: &Tensor, b: &Tensor| -> Result<()> {
            if a.dims() != b.dims() {
                return Err(Error::invalid(format!(
                    "'{}': {name} has shape {:?}, the config needs {:?}",
                    path.display(),
                    a.dims(),
                    b.dims()
                )));
            }
            Ok(())
        };
        for (name, var, m, v) in t.opt.state.iter_mut() {
            let p = get("params", name)?;
            check(name, &p, var.as_tensor())?;
            var.set(&p)?;
            *m = get("adam_m", name)?;
            *v = get("adam_v", name)?;
            let e = get("ema", name)?;
            t.ema.insert(name.clone(), e);
        }
        t.opt.t = meta.adam_t;
        t.step = meta.step;
        t.rng = meta.rng.restore()?;
        t.elapsed_before_s = meta.elapsed_s;
        Ok(t)
    }

    /// The batch of the current step: x0 `[B, 3, S, S]` and clean condition ids per image.
    fn batch(&self) -> Result<(Tensor, Vec<Vec<u32>>)> {
        let b = self.config.batch_size;
        let start = self.step * b as u64;
        let s = self.config.unet.image_size;
        let mut x = Vec::with_capacity(b * 3 * s * s);
        let mut ids = Vec::with_capacity(b);
        match &self.folder {
            None => {
                for (spec, img) in shapes::render_range(self.config.data_seed, start, b) {
                    for c in 0..3 {
                        x.extend(img.pixels().map(|p| p.0[c] as f32 / 127.5 - 1.0));
                    }
                    ids.push(vec![spec.colour as u32, spec.shape as u32]);
                }
            }
            Some(ds) => {
                for i in ds.indices(self.config.data_seed, start, b) {
                    x.extend_from_slice(&ds.images[i]);
                    ids.push(ds.labels[i].into_iter().collect());
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
        let nulls = cfg.unet.vocab.null_ids();
        let mut cond = Vec::with_capacity(b * nulls.len());
        for id in &ids {
            let drop_all = self.rng.random::<f64>() < cfg.cond_drop;
            for (slot, &null) in nulls.iter().enumerate() {
                let drop = drop_all || self.rng.random::<f64>() < cfg.slot_drop;
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
        let pred = self.model.forward(&x_t, &tf, &cond)?;
        let loss = candle_nn::loss::mse(&pred, &target)?;
        let grads = loss.backward()?;
        let vars: Vec<&Var> = self.opt.state.iter().map(|s| &s.1).collect();
        let norm = optim::grad_norm(&grads, &vars)?;
        let scale = if norm > cfg.grad_clip {
            cfg.grad_clip / norm
        } else {
            1.0
        };
        let lr = optim::lr_at(
            self.step,
            cfg.steps,
            cfg.warmup_steps,
            cfg.lr,
            cfg.lr_final_fraction,
        );
        self.opt.step(&grads, lr, scale)?;
        // EMA with warm-up, as in denoising-diffusion-pytorch.
        let n = self.step as f64;
        let decay = cfg.ema_decay.min((1.0 + n) / (10.0 + n));
        for (name, var, _, _) in &self.opt.state {
            let e = &self.ema[name];
            // Detached: otherwise every EMA tensor would keep the previous one alive through
            // the autograd graph, and memory would grow with every step.
            let next =
                (e.affine(decay, 0.0)? + var.as_tensor().affine(1.0 - decay, 0.0)?)?.detach();
            self.ema.insert(name.clone(), next);
        }
        self.step += 1;
        Ok(StepStats {
            step: self.step,
            loss: loss.to_scalar::<f32>()?,
            lr,
            grad_norm: norm,
        })
    }

    /// Writes the full state (weights, EMA, AdamW moments, step, RNG, config) atomically.
    pub fn save_checkpoint(&self, path: &Path, elapsed_s: f64) -> Result<()> {
        let mut tensors = HashMap::new();
        for (name, var, m, v) in &self.opt.state {
            tensors.insert(format!("params.{name}"), var.as_tensor().clone());
            tensors.insert(format!("adam_m.{name}"), m.clone());
            tensors.insert(format!("adam_v.{name}"), v.clone());
            tensors.insert(format!("ema.{name}"), self.ema[name].clone());
        }
        let meta = CheckpointMeta {
            format: 1,
            config: self.config.clone(),
            step: self.step,
            adam_t: self.opt.t,
            rng: RngState::of(&self.rng),
            elapsed_s,
        };
        checkpoint::save_with_meta(path, &tensors, CHECKPOINT_KEY, &meta)
    }

    /// Writes the EMA weights as a model file, with its config and schedule in the metadata.
    pub fn save_model(&self, path: &Path) -> Result<()> {
        let meta = ModelMeta {
            format: 1,
            unet: self.config.unet.clone(),
            schedule: self.config.schedule,
            trained_steps: self.step,
        };
        checkpoint::save_with_meta(path, &self.ema, MODEL_KEY, &meta)
    }

    /// The network with the EMA weights, for previews.
    pub fn ema_model(&self) -> Result<UNet> {
        let vb = VarBuilder::from_tensors(self.ema.clone(), DType::F32, &self.device);
        Ok(UNet::new(&self.config.unet, vb)?)
    }
}
