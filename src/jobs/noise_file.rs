//! Noise files: a starting state `noise` `[K, C, H, W]` (f32) in safetensors, as
//! `diffuse invert` writes it, with what made it (prompt, sampler, the step and timestep it
//! is the state at) in the `diffuse_noise` metadata. Files from elsewhere need only the
//! tensor.

use std::collections::HashMap;
use std::path::Path;

use candle_core::{DType, Device, Tensor};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::io::safetensors::save_with_meta;
use crate::sampler::SamplerConfig;

/// The metadata key of noise files.
pub const NOISE_KEY: &str = "diffuse_noise";
/// The tensor's name.
pub const NOISE_TENSOR: &str = "noise";

/// What made a noise file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NoiseMeta {
    pub prompt: String,
    pub sampler: SamplerConfig,
    pub guidance: f64,
    /// The sampler step this is the state at (0: the first step's input).
    pub start_step: usize,
    /// The timestep of that step.
    pub timestep: usize,
    pub model_sha256: String,
}

/// Writes `noise` `[K, C, H, W]` as f32 with `meta`, atomically.
pub fn save_noise(path: &Path, noise: &Tensor, meta: &NoiseMeta) -> Result<()> {
    let tensors = HashMap::from([(NOISE_TENSOR.to_string(), noise.to_dtype(DType::F32)?)]);
    save_with_meta(path, &tensors, NOISE_KEY, meta)
}

/// Reads a noise file for images of shape `chw`, at most `max_images` of them: the tensor
/// `[K, C, H, W]` (or `[C, H, W]`, read as K = 1) on `device`, and the metadata if the file
/// has it. The size is checked before reading; a wrong dtype or shape is a one-line error.
pub fn load_noise(
    path: &Path,
    chw: [usize; 3],
    max_images: usize,
    device: &Device,
) -> Result<(Tensor, Option<NoiseMeta>)> {
    let fail = |reason: String| Error::file(path, reason);
    let limit = (max_images * chw.iter().product::<usize>() * 4 + (1 << 20)) as u64;
    let stat = std::fs::metadata(path).map_err(|e| Error::file(path, e))?;
    if !stat.is_file() {
        return Err(fail("not a regular file".into()));
    }
    let len = stat.len();
    if len > limit {
        return Err(fail(format!(
            "{len} bytes is more than a noise file of at most {max_images} images {chw:?} takes"
        )));
    }
    let bytes = std::fs::read(path).map_err(|e| Error::file(path, e))?;
    let (_, header) = safetensors::SafeTensors::read_metadata(&bytes)
        .map_err(|e| fail(format!("not a valid safetensors file ({e})")))?;
    let meta = match header.metadata().as_ref().and_then(|m| m.get(NOISE_KEY)) {
        Some(json) => Some(
            serde_json::from_str::<NoiseMeta>(json)
                .map_err(|e| fail(format!("invalid '{NOISE_KEY}' metadata: {e}")))?,
        ),
        None => None,
    };
    let mut tensors = candle_core::safetensors::load_buffer(&bytes, device).map_err(|e| {
        fail(format!(
            "cannot read tensors: {}",
            crate::error::one_line(&e)
        ))
    })?;
    let noise = match tensors.remove(NOISE_TENSOR) {
        Some(t) => t,
        None if tensors.len() == 1 => tensors.into_values().next().expect("one tensor"),
        None => return Err(fail(format!("has no tensor named '{NOISE_TENSOR}'"))),
    };
    if noise.dtype() != DType::F32 {
        return Err(fail(format!(
            "holds {:?} values; a noise file holds F32",
            noise.dtype()
        )));
    }
    let noise = if noise.rank() == 3 {
        noise.unsqueeze(0)?
    } else {
        noise
    };
    let dims = noise.dims().to_vec();
    if dims.len() != 4 || dims[1..] != chw || dims[0] == 0 || dims[0] > max_images {
        return Err(fail(format!(
            "holds a tensor of shape {dims:?}; this model needs [K, {}, {}, {}] with K in 1..={max_images}",
            chw[0], chw[1], chw[2]
        )));
    }
    Ok((noise, meta))
}
