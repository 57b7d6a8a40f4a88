//! Cross-attention maps: where each text token lands in the picture, read from the
//! attention probabilities of every spatial transformer during one forward pass.

use candle_core::{Result, Tensor};

use super::{AttentionMaps, UNet};

impl UNet {
    /// Where each text token lands: the cross-attention probabilities of one image, averaged
    /// over heads and over every transformer block (each upsampled to the image size).
    /// `x_t` `[1, C, H, W]`, `cond` `[1, L]` → `[L, H, W]`, each pixel's share of attention
    /// per token. Errors for a model without cross-attention.
    pub fn word_maps(&self, x_t: &Tensor, t: f64, cond: &Tensor) -> Result<Tensor> {
        let mut maps = AttentionMaps::new();
        self.forward_observed(x_t, &[t], cond, Some(&mut maps))?;
        if maps.is_empty() {
            candle_core::bail!("unet: this model has no cross-attention");
        }
        let side = self.config.image_size;
        let mut sum: Option<Tensor> = None;
        for (px, probs) in &maps {
            let (_, _, n, l) = probs.dims4()?; // [1, heads, px², L]
            let mut m = probs
                .mean(1)?
                .squeeze(0)?
                .t()?
                .reshape((1, l, *px, n / px))?; // [1, L, px, px]
            while m.dim(2)? < side {
                m = crate::nn::upsample_nearest2x(&m)?;
            }
            sum = Some(match sum {
                Some(s) => (s + m)?,
                None => m,
            });
        }
        let sum = sum.ok_or_else(|| candle_core::Error::msg("unet: no attention maps"))?;
        (sum / maps.len() as f64)?.squeeze(0)
    }
}
