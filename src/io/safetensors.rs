//! safetensors files: named tensors with one JSON metadata entry that carries their config
//! (model files, checkpoints), and plain tensor files (trajectories, parity fixtures). Every
//! write is atomic; every read error names the file on one line.

use std::collections::HashMap;
use std::path::Path;

use candle_core::{DType, Device, Tensor};
use serde::{de::DeserializeOwned, Serialize};

use crate::error::{Error, Result};
use crate::io::fs;

/// Serialises `tensors` (sorted by name) with optional metadata and writes them atomically.
fn write(
    path: &Path,
    tensors: &HashMap<String, Tensor>,
    meta: Option<HashMap<String, String>>,
) -> Result<()> {
    let mut sorted: Vec<(&String, &Tensor)> = tensors.iter().collect();
    sorted.sort_by(|a, b| a.0.cmp(b.0));
    let bytes = safetensors::serialize(sorted, meta).map_err(|e| Error::Encode {
        format: "safetensors",
        reason: e.to_string(),
    })?;
    fs::write_atomic(path, &bytes)
}

/// Writes named tensors to `path`, atomically.
pub fn save(path: &Path, tensors: &HashMap<String, Tensor>) -> Result<()> {
    write(path, tensors, None)
}

/// Writes `tensors` with one JSON metadata entry under `key`, atomically.
pub fn save_with_meta<M: Serialize>(
    path: &Path,
    tensors: &HashMap<String, Tensor>,
    key: &str,
    meta: &M,
) -> Result<()> {
    let json = serde_json::to_string(meta).map_err(|e| Error::Encode {
        format: "safetensors",
        reason: format!("metadata: {e}"),
    })?;
    write(
        path,
        tensors,
        Some(HashMap::from([(key.to_string(), json)])),
    )
}

/// Reads a safetensors file and its JSON metadata under `key`, with one-line errors for a
/// missing, truncated or foreign file and for missing or invalid metadata.
pub fn load_with_meta<M: DeserializeOwned>(
    path: &Path,
    key: &str,
    device: &Device,
) -> Result<(M, HashMap<String, Tensor>)> {
    let bytes = std::fs::read(path).map_err(|e| Error::file(path, e))?;
    load_bytes_with_meta(&bytes, key, &format!("'{}'", path.display()), device)
}

/// [`load_with_meta`] on bytes already in memory (the built-in model); `name` names them in
/// errors (a quoted path, or "the built-in model …").
pub fn load_bytes_with_meta<M: DeserializeOwned>(
    bytes: &[u8],
    key: &str,
    name: &str,
    device: &Device,
) -> Result<(M, HashMap<String, Tensor>)> {
    let fail = |reason: String| Error::File {
        name: name.to_string(),
        reason,
    };
    let (_, header) = safetensors::SafeTensors::read_metadata(bytes)
        .map_err(|e| fail(format!("not a valid safetensors file ({e})")))?;
    let json = header
        .metadata()
        .as_ref()
        .and_then(|m| m.get(key))
        .ok_or_else(|| {
            fail(format!(
                "has no '{key}' metadata (not a diffuse file of this kind)"
            ))
        })?;
    let meta: M =
        serde_json::from_str(json).map_err(|e| fail(format!("invalid '{key}' metadata: {e}")))?;
    let tensors = candle_core::safetensors::load_buffer(bytes, device).map_err(|e| {
        fail(format!(
            "cannot read tensors: {}",
            crate::error::one_line(&e)
        ))
    })?;
    Ok((meta, tensors))
}

/// Writes a trajectory: each named tensor as f32, plus `timesteps` `[N]` as i64.
pub fn save_trajectory(
    path: &Path,
    tensors: Vec<(&str, Tensor)>,
    timesteps: &[usize],
) -> Result<()> {
    let device = match tensors.first() {
        Some((_, t)) => t.device().clone(),
        None => Device::Cpu,
    };
    let mut named = HashMap::new();
    for (name, t) in tensors {
        named.insert(name.to_string(), t.to_dtype(DType::F32)?);
    }
    let ts: Vec<i64> = timesteps.iter().map(|&t| t as i64).collect();
    let n = ts.len();
    named.insert("timesteps".to_string(), Tensor::from_vec(ts, n, &device)?);
    save(path, &named)
}
