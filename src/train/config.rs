//! Everything that defines a training run ([`TrainConfig`], saved in every checkpoint) and
//! where its images come from ([`DataSource`]). Each default is defined here once; the CLI
//! reads it from `TrainConfig::default()`.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::schedule::{NoiseSchedule, ScheduleConfig};
use crate::train::optim::AdamWConfig;
use crate::unet::UNetConfig;

/// Where training images come from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum DataSource {
    /// The procedural shapes dataset.
    #[default]
    Shapes,
    /// The procedural emoji-scene dataset (captions for a text model).
    Emoji,
    /// A folder of pictures: class subfolders (conditional) or flat (unconditional).
    Folder(PathBuf),
}

impl FromStr for DataSource {
    type Err = Error;
    /// `shapes` and `emoji` are the built-in datasets; anything else is a folder (a folder
    /// named `shapes` is written `./shapes`).
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "" => Err(Error::option_is(
                "data",
                "''",
                "is empty: give `shapes` or a folder",
            )),
            "shapes" => Ok(DataSource::Shapes),
            "emoji" => Ok(DataSource::Emoji),
            _ => Ok(DataSource::Folder(PathBuf::from(s))),
        }
    }
}

impl fmt::Display for DataSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DataSource::Shapes => f.write_str("shapes"),
            DataSource::Emoji => f.write_str("emoji"),
            DataSource::Folder(p) => write!(f, "{}", p.display()),
        }
    }
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
    /// Checkpoint, plot and preview every this many steps (kept, so a resumed run goes on
    /// checkpointing as it did).
    #[serde(default = "default_checkpoint_every")]
    pub checkpoint_every: u64,
    /// DDPM steps of the preview grids.
    #[serde(default = "default_preview_steps")]
    pub preview_steps: usize,
    /// The autoencoder file whose latents the denoiser learns (latent diffusion, as Stable
    /// Diffusion); None trains on pixels. Its weights go into the model file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub autoencoder: Option<PathBuf>,
    /// Min-SNR-γ loss weighting (Hang et al. 2023): each sample's loss is weighted by
    /// min(SNR(t), γ) / SNR(t) for ε-prediction (/ (SNR(t) + 1) for v-prediction), as
    /// diffusers' `train_text_to_image.py --snr_gamma`. None weighs every timestep alike.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snr_gamma: Option<f64>,
}

/// The largest batch `--batch-size` may ask for.
pub const MAX_BATCH_SIZE: usize = 4096;

/// Checkpoint, plot and preview every this many steps by default.
pub const DEFAULT_CHECKPOINT_EVERY: u64 = 500;
/// DDPM steps of the preview grids by default.
pub const DEFAULT_PREVIEW_STEPS: usize = 50;

fn default_checkpoint_every() -> u64 {
    DEFAULT_CHECKPOINT_EVERY
}

fn default_preview_steps() -> usize {
    DEFAULT_PREVIEW_STEPS
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
            // The shipped model's rate (models/README.md); 2e-3 diverged less often than
            // it converged in early runs.
            lr: 1e-3,
            warmup_steps: 200,
            lr_final_fraction: 0.05,
            adamw: AdamWConfig::default(),
            grad_clip: 1.0,
            ema_decay: 0.999,
            cond_drop: 0.1,
            slot_drop: 0.1,
            checkpoint_every: DEFAULT_CHECKPOINT_EVERY,
            preview_steps: DEFAULT_PREVIEW_STEPS,
            autoencoder: None,
            snr_gamma: None,
        }
    }
}

impl TrainConfig {
    /// Checks the values a user can set.
    pub fn validate(&self) -> Result<()> {
        if self.steps == 0 {
            return Err(Error::option("steps", 0, "train for at least one step"));
        }
        if self.batch_size > MAX_BATCH_SIZE {
            let range = format!("1..={MAX_BATCH_SIZE}");
            return Err(Error::out_of_range("batch-size", self.batch_size, range));
        }
        if self.unet.base_channels > crate::unet::config::MAX_BASE_CHANNELS {
            let range = format!("1..={}", crate::unet::config::MAX_BASE_CHANNELS);
            return Err(Error::out_of_range(
                "base-channels",
                self.unet.base_channels,
                range,
            ));
        }
        if self.batch_size == 0 {
            return Err(Error::option(
                "batch-size",
                0,
                "a batch needs at least one image",
            ));
        }
        if !(self.lr > 0.0 && self.lr < 1.0) {
            return Err(Error::out_of_range("lr", self.lr, "(0, 1)"));
        }
        for (option, p) in [("cond-drop", self.cond_drop), ("slot-drop", self.slot_drop)] {
            if !(0.0..1.0).contains(&p) {
                return Err(Error::out_of_range(option, p, "[0, 1)"));
            }
        }
        if self.checkpoint_every == 0 {
            return Err(Error::option("checkpoint-every", 0, "must be at least 1"));
        }
        if self.preview_steps == 0 || self.preview_steps > self.schedule.train_timesteps {
            let range = format!(
                "1..={} (the training timesteps)",
                self.schedule.train_timesteps
            );
            return Err(Error::out_of_range(
                "preview-steps",
                self.preview_steps,
                range,
            ));
        }
        if let Some(g) = self.snr_gamma {
            if !(g > 0.0 && g <= 1000.0) {
                return Err(Error::out_of_range("snr-gamma", g, "(0, 1000]"));
            }
        }
        self.unet.validate()?;
        if self.autoencoder.is_some() && self.data != DataSource::Emoji {
            return Err(Error::Config {
                what: "train",
                reason: "--autoencoder learns the latents of the emoji scenes: give --data emoji"
                    .into(),
            });
        }
        if self.data == DataSource::Emoji && self.autoencoder.is_none() {
            let size = crate::data::emoji::SIZE as usize;
            if self.unet.text.is_none()
                || self.unet.image_size != size
                || self.unet.in_channels != 3
            {
                return Err(Error::Config {
                    what: "train",
                    reason: format!(
                        "the emoji scenes need a text model for 3×{size}×{size} images (UNetConfig::emoji())"
                    ),
                });
            }
        }
        NoiseSchedule::new(self.schedule)?;
        Ok(())
    }
}
