//! Reading a diffusers model folder: the flat layout (`config.json`,
//! `diffusion_pytorch_model.safetensors`, optional `scheduler_config.json`) or a pipeline
//! (`model_index.json`, `unet/`, `scheduler/`). Weights must be safetensors, every weight the
//! network needs must be there and every weight there must be used; the legacy attention
//! names (`query`, `key`, `value`, `proj_attn`) are read as today's.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use candle_core::{DType, Device, Shape, Tensor};
use candle_nn::var_builder::SimpleBackend;
use candle_nn::VarBuilder;

use super::config::UNet2DConfig;
use super::scheduler::SchedulerConfig;
use super::unet2d::UNet2DModel;
use crate::error::{Error, Result};

/// The weights file diffuse reads, and the pickle it refuses.
pub const WEIGHTS: &str = "diffusion_pytorch_model.safetensors";
pub const PICKLE: &str = "diffusion_pytorch_model.bin";

/// A loaded diffusers model.
pub struct DiffusersModel {
    pub unet: UNet2DModel,
    /// The scheduler's config, when the folder has one.
    pub scheduler: Option<SchedulerConfig>,
    /// The folder holding `config.json` and the weights.
    pub unet_dir: PathBuf,
}

/// The folders of the network and the scheduler config file, by layout.
fn layout(dir: &Path) -> Result<(PathBuf, Option<PathBuf>)> {
    if !dir.is_dir() {
        return Err(Error::file(dir, "not a folder"));
    }
    let present = |p: PathBuf| p.is_file().then_some(p);
    if dir.join("model_index.json").is_file() {
        let scheduler = present(dir.join("scheduler").join("scheduler_config.json"));
        return Ok((dir.join("unet"), scheduler));
    }
    if dir.join("config.json").is_file() {
        return Ok((
            dir.to_path_buf(),
            present(dir.join("scheduler_config.json")),
        ));
    }
    Err(Error::file(
        dir,
        "has no config.json (nor model_index.json with unet/): not a diffusers model folder",
    ))
}

/// Today's name of a weight saved under diffusers' legacy attention names.
fn modern_name(name: &str) -> String {
    let renames = [
        (".query.", ".to_q."),
        (".key.", ".to_k."),
        (".value.", ".to_v."),
        (".proj_attn.", ".to_out.0."),
    ];
    let mut out = name.to_string();
    for (old, new) in renames {
        out = out.replace(old, new);
    }
    out
}

/// Weights by name, remembering which ones the network asked for.
struct TrackedWeights {
    tensors: HashMap<String, Tensor>,
    used: Arc<Mutex<HashSet<String>>>,
}

impl SimpleBackend for TrackedWeights {
    fn get(
        &self,
        s: Shape,
        name: &str,
        _: candle_nn::Init,
        dtype: DType,
        dev: &Device,
    ) -> candle_core::Result<Tensor> {
        let t = self.get_unchecked(name, dtype, dev)?;
        if t.shape() != &s {
            candle_core::bail!(
                "weight {name} has shape {:?}, the config needs {:?}",
                t.dims(),
                s.dims()
            );
        }
        Ok(t)
    }

    fn get_unchecked(&self, name: &str, dtype: DType, dev: &Device) -> candle_core::Result<Tensor> {
        let t = self
            .tensors
            .get(name)
            .ok_or_else(|| candle_core::Error::msg(format!("weight {name} is missing")))?;
        if let Ok(mut used) = self.used.lock() {
            used.insert(name.to_string());
        }
        t.to_dtype(dtype)?.to_device(dev)
    }

    fn contains_tensor(&self, name: &str) -> bool {
        self.tensors.contains_key(name)
    }
}

/// Reads the network's config and weights from `unet_dir` and builds it on `device`.
fn load_unet(unet_dir: &Path, device: &Device) -> Result<UNet2DModel> {
    let config_path = unet_dir.join("config.json");
    let text = std::fs::read_to_string(&config_path).map_err(|e| Error::file(&config_path, e))?;
    let config = UNet2DConfig::from_json(&text, &config_path.display().to_string())?;
    let weights = unet_dir.join(WEIGHTS);
    if !weights.is_file() {
        let reason = if unet_dir.join(PICKLE).is_file() {
            format!("holds only {PICKLE}, a pickle, which diffuse does not read; convert it with: python -c \"from diffusers import UNet2DModel; UNet2DModel.from_pretrained('{0}').save_pretrained('{0}', safe_serialization=True)\"", unet_dir.display())
        } else {
            format!("has no {WEIGHTS}")
        };
        return Err(Error::file(unet_dir, reason));
    }
    let fail = |e: candle_core::Error| {
        Error::file(
            &weights,
            e.to_string().lines().next().unwrap_or("").to_string(),
        )
    };
    let raw = candle_core::safetensors::load(&weights, &Device::Cpu).map_err(fail)?;
    let tensors: HashMap<String, Tensor> =
        raw.into_iter().map(|(k, v)| (modern_name(&k), v)).collect();
    let names: Vec<String> = tensors.keys().cloned().collect();
    let used = Arc::new(Mutex::new(HashSet::new()));
    let backend: Box<dyn SimpleBackend> = Box::new(TrackedWeights {
        tensors,
        used: used.clone(),
    });
    let vb = VarBuilder::from_backend(backend, DType::F32, device.clone());
    let unet = UNet2DModel::new(&config, vb).map_err(|e| match e {
        Error::Candle(c) => fail(c),
        other => other,
    })?;
    let used = used.lock().map(|u| u.clone()).unwrap_or_default();
    let mut extra: Vec<&String> = names.iter().filter(|n| !used.contains(*n)).collect();
    extra.sort();
    if let Some(first) = extra.first() {
        return Err(Error::file(
            &weights,
            format!(
                "weight {first} is not used by the config ({} unused in all)",
                extra.len()
            ),
        ));
    }
    Ok(unet)
}

/// Loads a diffusers `UNet2DModel` folder (flat or pipeline layout) on `device`.
pub fn load_folder(dir: &Path, device: &Device) -> Result<DiffusersModel> {
    let (unet_dir, scheduler_path) = layout(dir)?;
    let unet = load_unet(&unet_dir, device)?;
    let scheduler = match scheduler_path {
        Some(p) => {
            let text = std::fs::read_to_string(&p).map_err(|e| Error::file(&p, e))?;
            Some(SchedulerConfig::from_json(&text, &p.display().to_string())?)
        }
        None => None,
    };
    Ok(DiffusersModel {
        unet,
        scheduler,
        unet_dir,
    })
}
