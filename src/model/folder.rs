//! diffusers folders as models: a `UNet2DModel` folder loaded as a [`LoadedModel`], and a
//! model of diffuse's own written as one (`diffuse export --diffusers`).

use std::collections::HashMap;
use std::path::Path;

use candle_core::{Device, Tensor};

use super::{sha256_hex, LoadedModel, ModelMeta, Network, MODEL_FORMAT};
use crate::diffusers::{self, UNet2DConfig};
use crate::error::{Error, Result};
use crate::sampler::{SamplerConfig, SamplerKind};
use crate::schedule::{NoiseSchedule, ScheduleConfig};
use crate::unet::{Slot, UNetConfig, Vocabulary};

/// Loads a diffusers folder as a [`LoadedModel`]: the network, and the metadata the jobs read
/// (resolution, channels, prediction type from the scheduler, one prompt slot `class` whose
/// words are the class numbers for a class-conditional model, and the scheduler's noise
/// schedule, diffusers' DDPM defaults without one).
pub fn load_folder(dir: &Path, device: &Device) -> Result<LoadedModel> {
    let loaded = diffusers::load_folder(dir, device)?;
    let config = &loaded.unet.config;
    let sampler = match &loaded.scheduler {
        Some(s) => s.sampler(SamplerKind::Ddpm, 1)?,
        None => SamplerConfig::new(SamplerKind::Ddpm, 1),
    };
    let schedule = match &loaded.scheduler {
        Some(s) => s.schedule()?,
        None => ScheduleConfig::default(),
    };
    let slots = match config.num_class_embeds {
        Some(n) => vec![Slot {
            name: "class".into(),
            words: (0..n).map(|i| i.to_string()).collect(),
        }],
        None => Vec::new(),
    };
    let side = config.sample_size.unwrap_or(32);
    let meta = ModelMeta {
        format: MODEL_FORMAT,
        unet: UNetConfig {
            image_size: side,
            in_channels: config.in_channels,
            prediction: sampler.prediction,
            vocab: Vocabulary { slots },
            text: None,
            ..UNetConfig::default()
        },
        schedule,
        trained_steps: 0,
        sampling: None,
        autoencoder: None,
        data: None,
    };
    let weights = std::fs::read(loaded.unet_dir.join(diffusers::folder::WEIGHTS))
        .map_err(|e| Error::file(dir, e))?;
    Ok(LoadedModel {
        schedule: NoiseSchedule::new(meta.schedule)?,
        meta,
        net: Network::Diffusers(Box::new(loaded.unet)),
        scheduler: loaded.scheduler,
        name: dir.display().to_string(),
        sha256: sha256_hex(&weights),
        vae: None,
    })
}

/// Writes `model` as a diffusers folder in `dir` with `named`, its weights by diffuse's names;
/// a model that is a diffusers folder already is refused.
pub fn export_folder(
    model: &LoadedModel,
    named: HashMap<String, Tensor>,
    dir: &Path,
    force: bool,
) -> Result<UNet2DConfig> {
    if !matches!(model.net, Network::Own(_)) {
        return Err(Error::Unsupported(format!(
            "cannot export to diffusers: {} is a diffusers folder already",
            model.name
        )));
    }
    diffusers::export::export(&model.meta.unet, &model.meta.schedule, named, dir, force)
}
