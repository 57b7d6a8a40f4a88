//! A training checkpoint's metadata: the run's config, the step, AdamW's counter, the
//! trainer RNG's exact position and the wall time so far. With the weights, EMA and AdamW
//! moments saved beside it, a run continues exactly where it stopped.

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::rng::Rng;
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

/// The metadata of a checkpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckpointMeta {
    pub format: u32,
    pub config: TrainConfig,
    /// Steps completed.
    pub step: u64,
    /// AdamW's step counter.
    pub adam_t: u64,
    pub rng: RngState,
    /// Wall time spent training so far, in seconds, across resumes.
    #[serde(default)]
    pub elapsed_s: f64,
}
