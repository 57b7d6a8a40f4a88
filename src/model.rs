//! A trained denoiser: the model file format (safetensors whose metadata carries the UNet
//! config, the noise schedule and the trained step count), the built-in model, and what a
//! loaded model offers every job: its schedule, a sampler with its prediction type, and
//! classifier-free guidance on its own device.

use std::path::Path;

use candle_core::{DType, Device};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};
use crate::io::safetensors;
use crate::pipeline::Guided;
use crate::sampler::{self, Sampler, SamplerConfig, SamplerKind};
use crate::schedule::{NoiseSchedule, ScheduleConfig};
use crate::unet::{UNet, UNetConfig};

/// Metadata key of a model file.
pub const MODEL_KEY: &str = "diffuse_model";

/// The model-file format this version writes and reads.
pub const MODEL_FORMAT: u32 = 1;

/// The bytes of `models/shapes32.safetensors` at build time.
pub static SHAPES32: &[u8] = include_bytes!("../models/shapes32.safetensors");

/// The bytes of `models/emoji64.safetensors` at build time: the text-to-image model.
pub static EMOJI64: &[u8] = include_bytes!("../models/emoji64.safetensors");

/// A model compiled into the binary, chosen with `--model NAME`.
pub struct BuiltIn {
    pub name: &'static str,
    /// The file it was built from.
    pub file: &'static str,
    pub bytes: &'static [u8],
    /// What it draws, in a line.
    pub about: &'static str,
}

/// The built-in models, the default first.
pub static BUILTINS: [BuiltIn; 2] = [
    BuiltIn {
        name: "emoji64",
        file: "models/emoji64.safetensors",
        bytes: EMOJI64,
        about: "emoji scenes, 64 px: one or two of 24 nouns in a caption, e.g. \"a cat with a computer\"",
    },
    BuiltIn {
        name: "shapes32",
        file: "models/shapes32.safetensors",
        bytes: SHAPES32,
        about: "coloured shapes, 32 px: a colour and a shape, e.g. \"a red circle\"",
    },
];

/// The model used when no `--model` is given.
pub fn default_builtin() -> &'static BuiltIn {
    &BUILTINS[0]
}

/// The built-in model called `name`.
pub fn builtin(name: &str) -> Option<&'static BuiltIn> {
    BUILTINS.iter().find(|b| b.name == name)
}

/// What `diffuse models` shows of a built-in model, read from its metadata.
#[derive(Debug, Clone, Serialize)]
pub struct ModelSummary {
    pub name: &'static str,
    pub default: bool,
    pub file: &'static str,
    pub about: &'static str,
    /// Image side in pixels.
    pub resolution: usize,
    pub parameters: usize,
    pub bytes: usize,
    pub trained_steps: u64,
    /// "slots" (one word per slot) or "text" (a caption through the text encoder).
    pub prompts: &'static str,
    /// The words a prompt may use, per slot or (text models) all of them.
    pub vocabulary: Vec<(String, Vec<String>)>,
}

/// How a model reads prompts, "text" (a caption through the text encoder) or "slots" (one
/// word per slot), and the words it knows: all of them (text models) or per slot.
pub fn prompt_words(unet: &crate::unet::UNetConfig) -> (&'static str, Vec<(String, Vec<String>)>) {
    match &unet.text {
        // Id 0 is padding, not a word.
        Some(t) => ("text", vec![("words".to_string(), t.vocab[1..].to_vec())]),
        None => (
            "slots",
            unet.vocab
                .slots
                .iter()
                .map(|s| (s.name.clone(), s.words.clone()))
                .collect(),
        ),
    }
}

/// The built-in models with their vocabulary, resolution and size (no weights are built).
pub fn builtin_summaries() -> Result<Vec<ModelSummary>> {
    BUILTINS
        .iter()
        .enumerate()
        .map(|(i, b)| {
            let fail = |reason: String| Error::File {
                name: b.file.to_string(),
                reason,
            };
            let (_, header) = ::safetensors::SafeTensors::read_metadata(b.bytes)
                .map_err(|e| fail(e.to_string()))?;
            let json = header.metadata().as_ref().and_then(|m| m.get(MODEL_KEY));
            let meta: ModelMeta =
                serde_json::from_str(json.ok_or_else(|| fail("no metadata".into()))?)
                    .map_err(|e| fail(e.to_string()))?;
            let parameters = header
                .tensors()
                .values()
                .map(|t| t.shape.iter().product::<usize>())
                .sum();
            let (prompts, vocabulary) = prompt_words(&meta.unet);
            Ok(ModelSummary {
                name: b.name,
                default: i == 0,
                file: b.file,
                about: b.about,
                resolution: meta.unet.image_size,
                parameters,
                bytes: b.bytes.len(),
                trained_steps: meta.trained_steps,
                prompts,
                vocabulary,
            })
        })
        .collect()
}

/// The largest model file diffuse reads (checked before reading, so a wrong path such as a
/// device file cannot exhaust memory).
pub const MAX_MODEL_BYTES: u64 = 2 << 30;

/// What a model file says about its weights.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelMeta {
    /// Format version of this metadata.
    pub format: u32,
    pub unet: UNetConfig,
    pub schedule: ScheduleConfig,
    /// Optimisation steps the weights were trained for.
    pub trained_steps: u64,
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

    /// The picture at `path` resized to this model's resolution, on its device.
    pub fn load_picture(&self, path: &Path) -> Result<crate::io::image::LoadedImage> {
        use crate::io::image::{load_image, LoadOptions, Size};
        let side = self.meta.unet.image_size as u32;
        let size = Some(Size {
            width: side,
            height: side,
        });
        load_image(
            path,
            &LoadOptions {
                size,
                ..LoadOptions::default()
            },
            self.device(),
        )
    }

    /// diffusers' defaults for `kind` at `steps`, with this model's prediction type.
    pub fn sampler_config(&self, kind: SamplerKind, steps: usize) -> SamplerConfig {
        self.with_prediction(SamplerConfig::new(kind, steps))
    }

    /// `config` with this model's prediction type (what the network outputs is the model's
    /// property, never the caller's choice). For a diffusers folder also its scheduler's
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

/// Builds the UNet from model-file tensors, naming the file when shapes or names disagree.
fn build(source: String, bytes: &[u8], device: &Device) -> Result<LoadedModel> {
    let fail = |reason: String| Error::File {
        name: source.clone(),
        reason,
    };
    let (meta, tensors) =
        safetensors::load_bytes_with_meta::<ModelMeta>(bytes, MODEL_KEY, &source, device)?;
    if meta.format != MODEL_FORMAT {
        return Err(fail(format!(
            "model format {} is not one this diffuse reads ({MODEL_FORMAT})",
            meta.format
        )));
    }
    meta.unet
        .validate()
        .map_err(|e| fail(format!("invalid config metadata: {e}")))?;
    let schedule = NoiseSchedule::new(meta.schedule)
        .map_err(|e| fail(format!("invalid schedule metadata: {e}")))?;
    let vb = candle_nn::VarBuilder::from_tensors(tensors, DType::F32, device);
    let unet = UNet::new(&meta.unet, vb)
        .map_err(|e| fail(format!("weights do not match the config: {e}")))?;
    Ok(LoadedModel {
        meta,
        net: Network::Own(Box::new(unet)),
        scheduler: None,
        schedule,
        name: source,
        sha256: sha256_hex(bytes),
    })
}

/// Reads a model file, refusing anything that is not a regular file of a sane size.
fn read_model_file(path: &Path) -> Result<Vec<u8>> {
    let meta = std::fs::metadata(path).map_err(|e| Error::file(path, e))?;
    if !meta.is_file() {
        return Err(Error::file(path, "not a regular file"));
    }
    if meta.len() > MAX_MODEL_BYTES {
        return Err(Error::file(
            path,
            format!(
                "{} bytes is larger than the {} bytes a model file may have",
                meta.len(),
                MAX_MODEL_BYTES
            ),
        ));
    }
    std::fs::read(path).map_err(|e| Error::file(path, e))
}

/// Loads a model file written by `diffuse train`.
pub fn load_file(path: &Path, device: &Device) -> Result<LoadedModel> {
    let bytes = read_model_file(path)?;
    build(format!("'{}'", path.display()), &bytes, device)
}

/// Loads a model from bytes in memory; `name` names it in messages.
pub fn load_bytes(name: &str, bytes: &[u8], device: &Device) -> Result<LoadedModel> {
    build(name.to_string(), bytes, device)
}

/// The weights of the model `load(path)` loads (a file or a built-in model), by name, on the
/// CPU.
pub fn weights(
    path: Option<&Path>,
) -> Result<std::collections::HashMap<String, candle_core::Tensor>> {
    let named = path
        .filter(|p| !p.exists())
        .and_then(|p| p.to_str())
        .and_then(builtin);
    let (name, bytes) = match (path, named) {
        (_, Some(b)) => (b.file.to_string(), b.bytes.to_vec()),
        (Some(p), None) => (format!("'{}'", p.display()), read_model_file(p)?),
        (None, None) => {
            let b = default_builtin();
            (b.file.to_string(), b.bytes.to_vec())
        }
    };
    let (_, tensors) =
        safetensors::load_bytes_with_meta::<ModelMeta>(&bytes, MODEL_KEY, &name, &Device::Cpu)?;
    Ok(tensors)
}

/// Loads a built-in model, named in messages as "the built-in model NAME (FILE)".
pub fn load_builtin(b: &BuiltIn, device: &Device) -> Result<LoadedModel> {
    load_bytes(
        &format!("the built-in model {} ({})", b.name, b.file),
        b.bytes,
        device,
    )
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
        Some(p) if p.is_dir() => crate::diffusers::load_model(p, device),
        Some(p) => {
            let mut model = load_file(p, device)?;
            model.name = p.display().to_string();
            Ok(model)
        }
        None => load_builtin(default_builtin(), device),
    }
}
