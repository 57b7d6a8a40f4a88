//! A trained denoiser and what a loaded model offers every job: its schedule, its sampling
//! defaults, a sampler with its prediction type, and classifier-free guidance on its own
//! device. Where models come from: [`file`] (the model file format: safetensors whose
//! metadata carries the UNet config, the noise schedule and the trained step count),
//! [`builtin`] (the models compiled into the binary) and [`folder`] (diffusers folders).

pub mod builtin;
pub mod file;
pub mod folder;

pub use builtin::{
    builtin, builtin_summaries, default_builtin, load_builtin, prompt_words, BuiltIn, ModelSummary,
    BUILTINS, EMOJI64, SHAPES32,
};
pub use file::{load_bytes, load_file, weights, MAX_MODEL_BYTES};

use std::path::Path;

use candle_core::Device;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::defaults::SamplingDefaults;
use crate::error::Result;
use crate::pipeline::Guided;
use crate::sampler::{self, Sampler, SamplerConfig, SamplerKind};
use crate::schedule::{NoiseSchedule, ScheduleConfig};
use crate::unet::{UNet, UNetConfig};

/// Metadata key of a model file.
pub const MODEL_KEY: &str = "diffuse_model";

/// The model-file format this version writes and reads.
pub const MODEL_FORMAT: u32 = 1;

/// What a model file says about its weights.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelMeta {
    /// Format version of this metadata.
    pub format: u32,
    pub unet: UNetConfig,
    pub schedule: ScheduleConfig,
    /// Optimisation steps the weights were trained for.
    pub trained_steps: u64,
    /// The sampling defaults the model was measured with; None takes the library's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sampling: Option<SamplingDefaults>,
    /// The autoencoder of a latent model (its weights are `vae.*`): the UNet denoises its
    /// latents and every picture is decoded from them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub autoencoder: Option<crate::vae::AutoencoderKLConfig>,
    /// The exact stream of training scenes (procedural data only), for `diffuse nearest`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<crate::nearest::DataStream>,
}

/// The network of a loaded model.
pub enum Network {
    /// diffuse's own UNet (a model file written by `diffuse train`, or a built-in one).
    Own(Box<UNet>),
    /// diffusers' `UNet2DModel` from a diffusers folder.
    Diffusers(Box<crate::diffusers::UNet2DModel>),
}

impl Network {
    /// The network as the sampling loop sees it.
    pub fn denoiser(&self) -> &dyn crate::pipeline::Denoiser {
        match self {
            Network::Own(u) => u.as_ref(),
            Network::Diffusers(d) => d.as_ref(),
        }
    }
}

/// A loaded denoiser with its metadata and where it came from.
pub struct LoadedModel {
    /// For a diffusers folder, the resolution, channels, prediction type, class vocabulary and
    /// schedule read from it; the other network fields are not its own.
    pub meta: ModelMeta,
    pub net: Network,
    /// A diffusers folder's scheduler config, whose sampler options apply on top of the
    /// caller's (see [`LoadedModel::with_prediction`]).
    pub scheduler: Option<crate::diffusers::SchedulerConfig>,
    /// The noise schedule the model was trained with (from `meta.schedule`).
    pub schedule: NoiseSchedule,
    /// The file's path, or "the built-in model NAME (FILE)".
    pub name: String,
    /// SHA-256 of the file's bytes, hex.
    pub sha256: String,
    /// The decoder (and encoder) of a latent model.
    pub vae: Option<crate::vae::AutoencoderKL>,
}

/// The SHA-256 of `bytes`, hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

impl LoadedModel {
    /// The device the weights live on; every tensor that meets the model is made here.
    pub fn device(&self) -> &Device {
        self.net.denoiser().device()
    }

    /// The side of the pictures this model makes: the UNet's, or its autoencoder's.
    pub fn picture_size(&self) -> usize {
        match &self.vae {
            Some(v) => v.config.sample_size,
            None => self.meta.unet.image_size,
        }
    }

    /// Pictures `[B, 3, S, S]` from denoiser states `[B, C, h, w]`: a latent model decodes
    /// them (divided by the scaling factor), a pixel model's are the pictures.
    pub fn decode(&self, x: &candle_core::Tensor) -> Result<candle_core::Tensor> {
        match &self.vae {
            Some(v) => Ok(v.from_latents(x)?),
            None => Ok(x.clone()),
        }
    }

    /// Denoiser states `[B, C, h, w]` of pictures `[B, 3, S, S]`: a latent model's latents.
    pub fn encode(&self, x: &candle_core::Tensor) -> Result<candle_core::Tensor> {
        match &self.vae {
            Some(v) => Ok(v.to_latents(x)?),
            None => Ok(x.clone()),
        }
    }

    /// The picture at `path` at this model's resolution, on its device: a picture that is not
    /// square is cropped to its centred square first (`cropped` says where).
    pub fn load_picture(&self, path: &Path) -> Result<crate::io::image::LoadedImage> {
        crate::io::image::load_square(path, self.picture_size() as u32, self.device())
    }

    /// The sampling defaults this model was measured with, else the library's.
    pub fn defaults(&self) -> SamplingDefaults {
        self.meta.sampling.unwrap_or(SamplingDefaults::LIBRARY)
    }

    /// The sampler a run takes when only `kind` and `steps` are given: diffusers' defaults
    /// with this model's thresholding and η defaults and a diffusers folder's spacing.
    pub fn default_sampler(&self, kind: SamplerKind, steps: usize) -> SamplerConfig {
        let d = self.defaults();
        let mut config = SamplerConfig {
            thresholding: d.thresholding,
            eta: d.eta,
            ..SamplerConfig::new(kind, steps)
        };
        if let Some(spacing) = self.folder_spacing() {
            config.timestep_spacing = spacing;
        }
        config
    }

    /// diffusers' defaults for `kind` at `steps`, with this model's prediction type.
    pub fn sampler_config(&self, kind: SamplerKind, steps: usize) -> SamplerConfig {
        self.with_prediction(SamplerConfig::new(kind, steps))
    }

    /// `config` with this model's prediction type (what the network outputs is the model's
    /// property, never the caller's choice); a latent model's x0 is never clipped or
    /// thresholded, since latents are not bounded to [-1, 1]. For a diffusers folder also its scheduler's
    /// `steps_offset`, and its `clip_sample` and `thresholding` where they are off (diffuse's
    /// flags can only turn them off too).
    pub fn with_prediction(&self, config: SamplerConfig) -> SamplerConfig {
        let mut config = SamplerConfig {
            prediction: self.meta.unet.prediction,
            ..config
        };
        if let Some(s) = &self.scheduler {
            config.steps_offset = s.steps_offset;
            config.clip_sample &= s.clip_sample;
            config.thresholding &= s.thresholding;
        }
        if self.vae.is_some() {
            config = config.for_latents();
        }
        config
    }

    /// The timestep spacing a diffusers folder's scheduler asks for, which commands use when
    /// `--timestep-spacing` is not given.
    pub fn folder_spacing(&self) -> Option<sampler::TimestepSpacing> {
        let s = self.scheduler.as_ref()?.timestep_spacing.as_deref()?;
        s.parse().ok()
    }

    /// A sampler over this model's schedule; the prediction type is the model's.
    pub fn sampler(&self, config: SamplerConfig) -> Result<Box<dyn Sampler + '_>> {
        sampler::build(&self.with_prediction(config), &self.schedule)
    }

    /// Classifier-free guidance at `scale` for a batch of condition ids (one `Vec` per image)
    /// against `uncond_ids`, with the id tensors on the model's device.
    pub fn guided(
        &self,
        scale: f64,
        cond_ids: &[Vec<u32>],
        uncond_ids: &[Vec<u32>],
    ) -> Result<Guided<'_>> {
        Guided::new(self.net.denoiser(), scale, cond_ids, uncond_ids)
    }
}

/// Loads `path` (a model file, or the name of a built-in model when no such file exists), or
/// the default built-in model when `path` is None.
pub fn load(path: Option<&Path>, device: &Device) -> Result<LoadedModel> {
    let named = path
        .filter(|p| !p.exists())
        .and_then(|p| p.to_str())
        .and_then(builtin);
    if let Some(b) = named {
        return load_builtin(b, device);
    }
    match path {
        Some(p) if !p.exists() => {
            let names: Vec<String> = (builtin::BUILTINS.iter())
                .map(|b| {
                    format!(
                        "{}{}",
                        b.name,
                        if b.is_default() { " (the default)" } else { "" }
                    )
                })
                .collect();
            Err(crate::error::Error::file(
                p,
                format!(
                    "no such file or folder, and not a built-in model ({}; `diffuse models` lists them)",
                    names.join(", ")
                ),
            ))
        }
        Some(p) if p.is_dir() => folder::load_folder(p, device),
        Some(p) => {
            let mut model = load_file(p, device)?;
            model.name = p.display().to_string();
            Ok(model)
        }
        None => load_builtin(default_builtin(), device),
    }
}
