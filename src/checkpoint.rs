//! Weights on disk: safetensors files whose metadata carries the configuration, written
//! atomically. A *model* file holds inference weights; a *checkpoint* holds everything a
//! training run needs to continue exactly.

use std::collections::HashMap;
use std::path::Path;

use candle_core::{Device, Tensor};
use serde::{de::DeserializeOwned, Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::fsutil;
use crate::schedule::ScheduleConfig;
use crate::unet::UNetConfig;

/// Metadata key of a model file.
pub const MODEL_KEY: &str = "diffuse_model";
/// Metadata key of a training checkpoint.
pub const CHECKPOINT_KEY: &str = "diffuse_checkpoint";

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

fn invalid(path: &Path, what: impl std::fmt::Display) -> Error {
    Error::invalid(format!("'{}': {what}", path.display()))
}

/// Writes `tensors` with one JSON metadata entry under `key`, atomically.
pub fn save_with_meta<M: Serialize>(
    path: &Path,
    tensors: &HashMap<String, Tensor>,
    key: &str,
    meta: &M,
) -> Result<()> {
    let json = serde_json::to_string(meta).expect("metadata serialises");
    let metadata = HashMap::from([(key.to_string(), json)]);
    let mut sorted: Vec<(&String, &Tensor)> = tensors.iter().collect();
    sorted.sort_by(|a, b| a.0.cmp(b.0));
    let bytes = safetensors::serialize(sorted, Some(metadata))
        .map_err(|e| invalid(path, format!("cannot serialise: {e}")))?;
    fsutil::write_atomic(path, &bytes)
}

/// Reads a safetensors file and its JSON metadata under `key`, with one-line errors for a
/// missing, truncated or foreign file and for missing or invalid metadata.
pub fn load_with_meta<M: DeserializeOwned>(
    path: &Path,
    key: &str,
    device: &Device,
) -> Result<(M, HashMap<String, Tensor>)> {
    let bytes = std::fs::read(path).map_err(|e| invalid(path, e))?;
    load_bytes_with_meta(&bytes, key, device).map_err(|e| invalid(path, e))
}

/// [`load_with_meta`] on bytes already in memory (the embedded model).
pub fn load_bytes_with_meta<M: DeserializeOwned>(
    bytes: &[u8],
    key: &str,
    device: &Device,
) -> std::result::Result<(M, HashMap<String, Tensor>), String> {
    let (_, header) = safetensors::SafeTensors::read_metadata(bytes)
        .map_err(|e| format!("not a valid safetensors file ({e})"))?;
    let json = header
        .metadata()
        .as_ref()
        .and_then(|m| m.get(key))
        .ok_or_else(|| format!("has no '{key}' metadata (not a diffuse file of this kind)"))?;
    let meta: M =
        serde_json::from_str(json).map_err(|e| format!("invalid '{key}' metadata: {e}"))?;
    let tensors = candle_core::safetensors::load_buffer(bytes, device)
        .map_err(|e| format!("cannot read tensors: {e}"))?;
    Ok((meta, tensors))
}

/// A loaded denoiser with its metadata.
pub struct LoadedModel {
    pub meta: ModelMeta,
    pub unet: crate::unet::UNet,
}

/// Builds the UNet from model-file tensors, naming the file when shapes or names disagree.
fn build_model(
    source: &str,
    meta: ModelMeta,
    tensors: HashMap<String, Tensor>,
    device: &Device,
) -> Result<LoadedModel> {
    meta.unet
        .validate()
        .map_err(|e| Error::invalid(format!("{source}: invalid config metadata: {e}")))?;
    crate::schedule::NoiseSchedule::new(meta.schedule)
        .map_err(|e| Error::invalid(format!("{source}: invalid schedule metadata: {e}")))?;
    let vb = candle_nn::VarBuilder::from_tensors(tensors, candle_core::DType::F32, device);
    let unet = crate::unet::UNet::new(&meta.unet, vb)
        .map_err(|e| Error::invalid(format!("{source}: weights do not match the config: {e}")))?;
    Ok(LoadedModel { meta, unet })
}

/// Loads a model file written by `diffuse train`.
pub fn load_model(path: &Path, device: &Device) -> Result<LoadedModel> {
    let (meta, tensors) = load_with_meta::<ModelMeta>(path, MODEL_KEY, device)?;
    build_model(&format!("'{}'", path.display()), meta, tensors, device)
}

/// Loads a model from bytes (the model compiled into the binary).
pub fn load_model_bytes(name: &str, bytes: &[u8], device: &Device) -> Result<LoadedModel> {
    let (meta, tensors) = load_bytes_with_meta::<ModelMeta>(bytes, MODEL_KEY, device)
        .map_err(|e| Error::invalid(format!("{name}: {e}")))?;
    build_model(name, meta, tensors, device)
}
