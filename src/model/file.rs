//! The model file `diffuse train` writes: safetensors whose metadata (key [`MODEL_KEY`])
//! carries the UNet config, the noise schedule and the trained step count, read only when it
//! is a regular file of a sane size.

use std::path::Path;

use candle_core::{DType, Device};

use super::{builtin, default_builtin, sha256_hex, LoadedModel, ModelMeta, Network};
use super::{MODEL_FORMAT, MODEL_KEY};
use crate::error::{Error, Result};
use crate::io::safetensors;
use crate::schedule::NoiseSchedule;
use crate::unet::UNet;

/// The largest model file diffuse reads (checked before reading, so a wrong path such as a
/// device file cannot exhaust memory).
pub const MAX_MODEL_BYTES: u64 = 2 << 30;

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
    let unet = UNet::new(&meta.unet, vb.clone()).map_err(|e| {
        let e = crate::error::one_line(&e);
        fail(format!("weights do not match the config: {e}"))
    })?;
    let vae = match &meta.autoencoder {
        Some(ae) => Some(latent_decoder(ae, &meta.unet, vb).map_err(fail)?),
        None => None,
    };
    Ok(LoadedModel {
        meta,
        net: Network::Own(Box::new(unet)),
        scheduler: None,
        schedule,
        name: source,
        sha256: sha256_hex(bytes),
        vae,
    })
}

/// The autoencoder of a latent model file (weights `vae.*`), checked against the UNet.
fn latent_decoder(
    ae: &crate::vae::AutoencoderKLConfig,
    unet: &crate::unet::UNetConfig,
    vb: candle_nn::VarBuilder,
) -> std::result::Result<crate::vae::AutoencoderKL, String> {
    ae.validate()
        .map_err(|e| format!("invalid autoencoder metadata: {e}"))?;
    if ae.latent_size() != unet.image_size || ae.latent_channels != unet.in_channels {
        return Err(format!(
            "the autoencoder's {}×{}×{} latents are not what the UNet denoises",
            ae.latent_channels,
            ae.latent_size(),
            ae.latent_size()
        ));
    }
    crate::vae::AutoencoderKL::new(ae, vb.pp(crate::train::latent::VAE_PREFIX))
        .map_err(|e| format!("autoencoder weights do not match its config: {e}"))
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
