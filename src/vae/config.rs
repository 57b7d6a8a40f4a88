//! The autoencoder's shape, with diffusers' `AutoencoderKL` option names: the blocks' channels
//! and layers, the latent channels, the GroupNorm groups, the picture side, and the scaling
//! factor that gives the latents unit variance (1 / their std over the training data,
//! computed after training, never hard-coded).

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// diffusers' `AutoencoderKL` config, the options this autoencoder has.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AutoencoderKLConfig {
    /// Picture channels in and out (3 for RGB).
    pub in_channels: usize,
    pub out_channels: usize,
    /// One `DownEncoderBlock2D` (encoder) and one `UpDecoderBlock2D` (decoder) per entry;
    /// each encoder block but the last halves the side, so f = 2^(blocks − 1).
    pub block_out_channels: Vec<usize>,
    /// ResNets per encoder block (the decoder's blocks have one more, as diffusers').
    pub layers_per_block: usize,
    /// Channels of the latent z (4, as Stable Diffusion's).
    pub latent_channels: usize,
    pub norm_num_groups: usize,
    /// Side of the square pictures, in pixels.
    pub sample_size: usize,
    /// z is multiplied by this before diffusion and divided by it before decoding.
    pub scaling_factor: f64,
    /// Self-attention in the middle blocks.
    pub mid_block_add_attention: bool,
}

impl Default for AutoencoderKLConfig {
    /// 3×64×64 pictures to 4×16×16 latents (f = 4): 32, 32 and 64 channels, one ResNet per
    /// encoder block, attention in the middle; the scaling factor 1 until it is measured.
    fn default() -> Self {
        Self {
            in_channels: 3,
            out_channels: 3,
            block_out_channels: vec![32, 32, 64],
            layers_per_block: 1,
            latent_channels: 4,
            norm_num_groups: 8,
            sample_size: 64,
            scaling_factor: 1.0,
            mid_block_add_attention: true,
        }
    }
}

impl AutoencoderKLConfig {
    /// The downsampling factor f: the picture side over the latent side.
    pub fn factor(&self) -> usize {
        1 << self.block_out_channels.len().saturating_sub(1)
    }

    /// The latent side.
    pub fn latent_size(&self) -> usize {
        self.sample_size / self.factor()
    }

    /// Refuses sizes that do not fit together, naming the option.
    pub fn validate(&self) -> Result<()> {
        let fail = |reason: String| {
            Err(Error::Config {
                what: "autoencoder",
                reason,
            })
        };
        let n = self.block_out_channels.len();
        if n == 0 || n > 5 {
            return fail(format!("block_out_channels has {n} entries; give 1..=5"));
        }
        if self.layers_per_block == 0 || self.layers_per_block > 4 {
            return fail(format!(
                "layers_per_block {} is outside 1..=4",
                self.layers_per_block
            ));
        }
        let g = self.norm_num_groups;
        if let Some(c) = self
            .block_out_channels
            .iter()
            .find(|&&c| g == 0 || c % g != 0)
        {
            return fail(format!(
                "block_out_channels {c} does not divide by norm_num_groups {g}"
            ));
        }
        if self.sample_size == 0 || self.sample_size % self.factor() != 0 {
            return fail(format!(
                "sample_size {} does not divide by the factor {}",
                self.sample_size,
                self.factor()
            ));
        }
        if self.latent_channels == 0 || self.in_channels == 0 || self.out_channels == 0 {
            return fail("channel counts must be at least 1".into());
        }
        if !(self.scaling_factor.is_finite() && self.scaling_factor > 0.0) {
            return fail(format!(
                "scaling_factor {} must be > 0",
                self.scaling_factor
            ));
        }
        Ok(())
    }
}
