//! A training checkpoint's metadata: the run's config, the step, AdamW's counter, the
//! trainer RNG's exact position and the wall time so far. With the weights, EMA and AdamW
//! moments saved beside it, a run continues exactly where it stopped.

use std::collections::HashMap;
use std::path::Path;

use candle_core::Tensor;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::rng::Rng;
use crate::train::optim::AdamW;
use crate::train::TrainConfig;

/// Metadata key of a training checkpoint.
pub const CHECKPOINT_KEY: &str = "diffuse_checkpoint";

/// The RNG's position, so a resumed run draws exactly the numbers it would have.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RngState {
    pub seed: Vec<u8>,
    pub stream: u64,
    /// u128 as a decimal string (JSON numbers cannot hold it).
    pub word_pos: String,
}

impl RngState {
    pub fn of(r: &Rng) -> Self {
        Self {
            seed: r.get_seed().to_vec(),
            stream: r.get_stream(),
            word_pos: r.get_word_pos().to_string(),
        }
    }

    pub fn restore(&self) -> Result<Rng> {
        let seed: [u8; 32] = self.seed.clone().try_into().map_err(|_| Error::Config {
            what: "checkpoint",
            reason: "the RNG seed is not 32 bytes".into(),
        })?;
        let mut r = ChaCha8Rng::from_seed(seed);
        r.set_stream(self.stream);
        r.set_word_pos(self.word_pos.parse().map_err(|_| Error::Config {
            what: "checkpoint",
            reason: "the RNG position is not a number".into(),
        })?);
        Ok(r)
    }
}

/// The metadata of a checkpoint of a run whose config is `C` (the denoiser's by default).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckpointMeta<C = TrainConfig> {
    pub format: u32,
    pub config: C,
    /// Steps completed.
    pub step: u64,
    /// AdamW's step counter.
    pub adam_t: u64,
    pub rng: RngState,
    /// Wall time spent training so far, in seconds, across resumes.
    #[serde(default)]
    pub elapsed_s: f64,
}

impl<C: Serialize> CheckpointMeta<C> {
    /// The metadata of a run with `config` after `step` steps, `elapsed_s` seconds in all.
    pub fn of(config: C, step: u64, opt: &AdamW, rng: &Rng, elapsed_s: f64) -> Self {
        Self {
            format: 1,
            config,
            step,
            adam_t: opt.t,
            rng: RngState::of(rng),
            elapsed_s,
        }
    }

    /// Writes it under `key` with the run's [`state_tensors`], atomically.
    pub fn save(
        &self,
        path: &Path,
        key: &str,
        opt: &AdamW,
        ema: &HashMap<String, Tensor>,
    ) -> Result<()> {
        crate::io::safetensors::save_with_meta(path, &state_tensors(opt, ema), key, self)
    }
}

/// What a checkpoint holds besides its metadata: every variable (`params.`), its AdamW
/// moments (`adam_m.`, `adam_v.`) and its EMA (`ema.`), by name.
pub fn state_tensors(opt: &AdamW, ema: &HashMap<String, Tensor>) -> HashMap<String, Tensor> {
    let mut tensors = HashMap::new();
    for (name, var, m, v) in &opt.state {
        tensors.insert(format!("params.{name}"), var.as_tensor().clone());
        tensors.insert(format!("adam_m.{name}"), m.clone());
        tensors.insert(format!("adam_v.{name}"), v.clone());
        tensors.insert(format!("ema.{name}"), ema[name].clone());
    }
    tensors
}

/// Puts a checkpoint's [`state_tensors`] back into `opt` and `ema`; a missing tensor or a
/// shape the config does not have is an error that names the file at `path`.
pub fn restore_state(
    opt: &mut AdamW,
    ema: &mut HashMap<String, Tensor>,
    tensors: &HashMap<String, Tensor>,
    path: &Path,
) -> Result<()> {
    let get = |prefix: &str, name: &str| -> Result<Tensor> {
        tensors
            .get(&format!("{prefix}.{name}"))
            .cloned()
            .ok_or_else(|| {
                Error::file(
                    path,
                    format!(
                        "lacks tensor {prefix}.{name}: the checkpoint is from a different config"
                    ),
                )
            })
    };
    for (name, var, m, v) in opt.state.iter_mut() {
        let p = get("params", name)?;
        if p.dims() != var.as_tensor().dims() {
            return Err(Error::file(
                path,
                format!(
                    "{name} has shape {:?}, the config needs {:?}",
                    p.dims(),
                    var.as_tensor().dims()
                ),
            ));
        }
        var.set(&p)?;
        *m = get("adam_m", name)?;
        *v = get("adam_v", name)?;
        ema.insert(name.clone(), get("ema", name)?);
    }
    Ok(())
}
