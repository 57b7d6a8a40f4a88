//! What latent diffusion and Min-SNR add to the denoiser's training step: the frozen
//! autoencoder that turns each batch of scenes into diffusion latents, and the per-sample
//! loss weights of Min-SNR-γ (Hang et al. 2023, as diffusers' `train_text_to_image.py`).

use std::collections::HashMap;
use std::path::Path;

use candle_core::{Device, Tensor};

use crate::error::{Error, Result};
use crate::schedule::NoiseSchedule;
use crate::unet::{Prediction, UNetConfig};
use crate::vae::train::{load_autoencoder, AutoencoderMeta, AUTOENCODER_KEY};
use crate::vae::AutoencoderKL;

/// The prefix of the autoencoder's weights inside a latent model file.
pub const VAE_PREFIX: &str = "vae";

/// The frozen autoencoder of a latent run, with its weights to copy into the model file.
pub struct LatentSpace {
    pub autoencoder: AutoencoderKL,
    tensors: HashMap<String, Tensor>,
}

impl LatentSpace {
    /// Loads the autoencoder at `path` and checks that `unet` denoises its latents.
    pub fn load(path: &Path, unet: &UNetConfig, device: &Device) -> Result<Self> {
        let (meta, autoencoder) = load_autoencoder(path, device)?;
        let (_, tensors): (AutoencoderMeta, _) =
            crate::io::safetensors::load_with_meta(path, AUTOENCODER_KEY, device)?;
        let ae = &meta.autoencoder;
        let (side, c) = (ae.latent_size(), ae.latent_channels);
        if unet.image_size != side || unet.in_channels != c {
            return Err(Error::file(
                path,
                format!(
                    "its latents are {c}×{side}×{side}, but the UNet denoises {}×{}×{}",
                    unet.in_channels, unet.image_size, unet.image_size
                ),
            ));
        }
        Ok(Self {
            autoencoder,
            tensors,
        })
    }

    /// Diffusion latents `[B, 4, h, w]` of pictures `[B, 3, S, S]`: the posterior mean times
    /// the scaling factor, outside the gradient graph.
    pub fn encode(&self, x: &Tensor) -> Result<Tensor> {
        Ok(self.autoencoder.to_latents(x)?.detach())
    }

    /// The autoencoder's weights, named `vae.<diffusers name>`.
    pub fn prefixed_tensors(&self) -> impl Iterator<Item = (String, Tensor)> + '_ {
        self.tensors
            .iter()
            .map(|(n, t)| (format!("{VAE_PREFIX}.{n}"), t.clone()))
    }
}

/// Min-SNR-γ weights `[B]` for timesteps `t`: min(SNR, γ) / SNR for ε-prediction and
/// min(SNR, γ) / (SNR + 1) for v-prediction (the v target's MSE is (SNR + 1) times the x0
/// one's), as diffusers' `compute_snr` path.
pub fn min_snr_weights(
    schedule: &NoiseSchedule,
    t: &[usize],
    gamma: f64,
    prediction: Prediction,
    device: &Device,
) -> Result<Tensor> {
    let w: Vec<f32> = t
        .iter()
        .map(|&t| {
            let snr = schedule.snr(t);
            let clipped = snr.min(gamma);
            (match prediction {
                Prediction::Epsilon => clipped / snr,
                Prediction::VPrediction => clipped / (snr + 1.0),
            }) as f32
        })
        .collect();
    Ok(Tensor::from_vec(w, t.len(), device)?)
}

/// The mean over the batch of each sample's MSE times its weight.
pub fn weighted_mse(pred: &Tensor, target: &Tensor, weights: &Tensor) -> Result<Tensor> {
    let per_sample = (pred - target)?.sqr()?.flatten_from(1)?.mean(1)?; // [B]
    Ok((per_sample * weights)?.mean_all()?)
}
