//! The UNet's configuration: serde-serialisable, stored with the weights, and the source of
//! the analytic FLOP count.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

pub use crate::vocab::{Slot, Vocabulary};

use crate::error::{Error, Result};

/// What the network predicts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Prediction {
    /// ε, the noise that was added (diffusers `epsilon`).
    #[default]
    Epsilon,
    /// v = √ᾱ·ε − √(1−ᾱ)·x0 (diffusers `v_prediction`).
    VPrediction,
}

impl Prediction {
    /// diffusers' name: `epsilon` or `v_prediction`.
    pub fn name(self) -> &'static str {
        match self {
            Prediction::Epsilon => "epsilon",
            Prediction::VPrediction => "v_prediction",
        }
    }
}

impl fmt::Display for Prediction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Prediction {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "epsilon" => Ok(Prediction::Epsilon),
            "v_prediction" => Ok(Prediction::VPrediction),
            _ => Err(Error::unknown(
                "prediction type",
                s,
                &["epsilon", "v_prediction"],
            )),
        }
    }
}

/// The denoiser's shape. Defaults give a 1.1M-parameter network (0.50 GFLOP per forward
/// image) for 3×32×32 images: chosen with `diffuse bench` for CPU training speed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UNetConfig {
    /// Side of the square images, in pixels.
    pub image_size: usize,
    /// Image channels (3 for RGB).
    pub in_channels: usize,
    /// Channels of the first level; level l has `base_channels · channel_mult[l]`.
    pub base_channels: usize,
    /// Channel multiplier per resolution level; each level after the first halves the size.
    pub channel_mult: Vec<usize>,
    /// ResBlocks per level on the way down (the way up has one more, for the extra skip).
    pub num_res_blocks: usize,
    /// Resolutions (in pixels) whose blocks get self-attention; the middle block always does.
    pub attention_resolutions: Vec<usize>,
    /// GroupNorm groups.
    pub groups: usize,
    /// Attention heads.
    pub num_heads: usize,
    /// ε- or v-prediction.
    pub prediction: Prediction,
    /// The prompt vocabulary of a slot model (empty for a text model).
    pub vocab: Vocabulary,
    /// The text encoder of a text model (Stable Diffusion-style conditioning).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<crate::text::TextConfig>,
    /// Resolutions (in pixels) whose blocks get a spatial transformer with cross-attention to
    /// the text; the middle block always gets one in a text model.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cross_attention_resolutions: Vec<usize>,
    /// Add a fixed 2D sinusoidal position signal to the image tokens of every spatial
    /// transformer, before attention (so cross-attention can tell where a pixel is).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub position_embedding: bool,
    /// Resolutions (in pixels) whose spatial transformers attend only to the text, in both
    /// attentions (diffusers' `only_cross_attention`): no H·W × H·W self-attention there.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub only_cross_attention: Vec<usize>,
}

impl Default for UNetConfig {
    fn default() -> Self {
        Self {
            image_size: 32,
            in_channels: 3,
            base_channels: 32,
            channel_mult: vec![1, 2, 2],
            num_res_blocks: 1,
            attention_resolutions: vec![8],
            groups: 8,
            num_heads: 4,
            prediction: Prediction::Epsilon,
            vocab: Vocabulary::shapes(),
            text: None,
            cross_attention_resolutions: Vec::new(),
            position_embedding: false,
            only_cross_attention: Vec::new(),
        }
    }
}

/// The largest image side a model may have.
pub const MAX_IMAGE_SIZE: usize = 1024;
/// The widest first level a model may have.
pub const MAX_BASE_CHANNELS: usize = 512;

impl UNetConfig {
    /// The text-to-image model for 64×64 emoji scenes: four levels (64, 32, 16, 8 px) of
    /// 32, 64, 64 and 64 channels, spatial transformers with cross-attention at 16 and 8 px
    /// and in the middle, and a two-layer text encoder over the emoji vocabulary: 2.2M
    /// parameters, so a resumable checkpoint (weights, EMA, two AdamW moments) stays near 35 MB.
    pub fn emoji() -> Self {
        Self {
            image_size: crate::data::emoji::SIZE as usize,
            in_channels: 3,
            base_channels: 32,
            channel_mult: vec![1, 2, 2, 2],
            num_res_blocks: 1,
            attention_resolutions: Vec::new(),
            groups: 8,
            num_heads: 4,
            prediction: Prediction::Epsilon,
            vocab: Vocabulary { slots: Vec::new() },
            text: Some(crate::text::TextConfig::emoji()),
            cross_attention_resolutions: vec![16, 8],
            position_embedding: false,
            only_cross_attention: Vec::new(),
        }
    }

    /// The latent text-to-image model: the emoji text UNet over an autoencoder's latents
    /// (4×16×16 for `ae64`), three levels of 64 channels (16, 8, 4 px) with cross-attention
    /// at 8 and 4 px and in the middle (CrossAttnDownBlock2D / CrossAttnUpBlock2D; the 16 px
    /// level has plain ResNet blocks, as Stable Diffusion 1.5's deepest level does). Spatial
    /// transformers at 16 px too cost 0.57 s against 0.27 s per batch-32 training step
    /// (`examples/unet_timing.rs`); `--cross-attention-resolutions` and
    /// `--only-cross-attention` measure that choice.
    pub fn emoji_latent(autoencoder: &crate::vae::AutoencoderKLConfig) -> Self {
        let side = autoencoder.latent_size();
        Self {
            image_size: side,
            in_channels: autoencoder.latent_channels,
            channel_mult: vec![2, 2, 2],
            cross_attention_resolutions: vec![side / 2, side / 4],
            ..Self::emoji()
        }
    }

    /// How the spatial transformers at `px` pixels treat their image tokens.
    pub(crate) fn token_options(&self, px: usize) -> crate::unet::transformer::TokenOptions {
        crate::unet::transformer::TokenOptions {
            position: self.position_embedding.then_some(px),
            only_cross_attention: self.only_cross_attention.contains(&px),
        }
    }

    /// Width of the time (and condition) embedding: 4 × base channels.
    pub fn temb_dim(&self) -> usize {
        4 * self.base_channels
    }

    /// Checks the sizes fit together.
    pub fn validate(&self) -> Result<()> {
        let bad = |reason: String| {
            Err(Error::Config {
                what: "unet",
                reason,
            })
        };
        let levels = self.channel_mult.len();
        if levels == 0 || self.base_channels == 0 || self.in_channels == 0 {
            return bad("channel_mult, base_channels and in_channels must be non-zero".into());
        }
        // Ceilings far above any CPU-trainable network, so a broken or hostile file cannot
        // ask for unbounded memory before the weights are even read.
        let limits = [
            ("image_size", self.image_size, MAX_IMAGE_SIZE),
            ("in_channels", self.in_channels, 64),
            ("base_channels", self.base_channels, MAX_BASE_CHANNELS),
            ("levels", levels, 8),
            ("num_res_blocks", self.num_res_blocks, 8),
            ("groups", self.groups, 256),
            ("num_heads", self.num_heads, 64),
        ];
        for (name, v, max) in limits {
            if v > max {
                return bad(format!("{name} {v} is above the limit {max}"));
            }
        }
        if self.num_heads == 0 || self.channel_mult.iter().any(|&m| m == 0 || m > 16) {
            return bad("num_heads must be at least 1 and every channel_mult in 1..=16".into());
        }
        if self.image_size % (1 << (levels - 1)) != 0 {
            return bad(format!(
                "image_size {} is not divisible by 2^{}",
                self.image_size,
                levels - 1
            ));
        }
        for m in &self.channel_mult {
            let c = self.base_channels * m;
            if self.groups == 0 || c % self.groups != 0 || c % self.num_heads != 0 {
                return bad(format!(
                    "{c} channels do not divide into {} groups and {} heads",
                    self.groups, self.num_heads
                ));
            }
        }
        if self.base_channels % self.groups != 0 {
            return bad("base_channels must be a multiple of groups".into());
        }
        match &self.text {
            Some(text) => {
                text.validate()?;
                if !self.vocab.slots.is_empty() {
                    return bad("a text model has no prompt slots".into());
                }
            }
            None if !self.cross_attention_resolutions.is_empty() => {
                return bad("cross-attention needs a text encoder".into());
            }
            None => {}
        }
        if let Some(px) = (self.only_cross_attention.iter())
            .find(|px| !self.cross_attention_resolutions.contains(px))
        {
            return bad(format!(
                "only_cross_attention at {px} px needs cross-attention there (cross_attention_resolutions)"
            ));
        }
        Ok(())
    }

    /// Multiply-adds ×2 of one forward pass for one image: convolutions, linear layers and
    /// attention matmuls (normalisation and elementwise work are not counted).
    pub fn flops_per_image(&self) -> f64 {
        let conv = |cin: usize, cout: usize, k: usize, px: usize| {
            2.0 * (cin * cout * k * k * px * px) as f64
        };
        let temb = self.temb_dim();
        let c0 = self.base_channels;
        let res = |cin: usize, cout: usize, px: usize| {
            let skip = if cin != cout {
                conv(cin, cout, 1, px)
            } else {
                0.0
            };
            conv(cin, cout, 3, px) + conv(cout, cout, 3, px) + 2.0 * (temb * cout) as f64 + skip
        };
        let mut f = 2.0 * (c0 * temb + temb * temb) as f64 + self.text_flops(); // time MLP
        let mut px = self.image_size;
        f += conv(self.in_channels, c0, 3, px);
        let mut ch = c0;
        let mut skips = vec![ch];
        let levels = self.channel_mult.len();
        for (l, m) in self.channel_mult.iter().enumerate() {
            let out = c0 * m;
            for _ in 0..self.num_res_blocks {
                f += res(ch, out, px) + self.mixer_flops(out, px, false);
                ch = out;
                skips.push(ch);
            }
            if l + 1 < levels {
                f += conv(ch, ch, 3, px / 2);
                px /= 2;
                skips.push(ch);
            }
        }
        f += 2.0 * res(ch, ch, px) + self.mixer_flops(ch, px, true);
        for (l, m) in self.channel_mult.iter().enumerate().rev() {
            let out = c0 * m;
            for _ in 0..=self.num_res_blocks {
                let skip = skips.pop().unwrap_or(0);
                f += res(ch + skip, out, px) + self.mixer_flops(out, px, false);
                ch = out;
            }
            if l > 0 {
                px *= 2;
                f += conv(ch, ch, 3, px);
            }
        }
        f + conv(ch, self.in_channels, 3, px)
    }

    /// FLOPs of the attention block after a ResBlock with `c` channels at `px` pixels (the
    /// middle block's when `mid`): self-attention, a spatial transformer, or none.
    fn mixer_flops(&self, c: usize, px: usize, mid: bool) -> f64 {
        let (n, cf) = ((px * px) as f64, c as f64);
        let proj = |rows: f64, cin: f64, cout: f64| 2.0 * rows * cin * cout;
        match &self.text {
            Some(t) if mid || self.cross_attention_resolutions.contains(&px) => {
                let (l, d) = (t.max_len as f64, t.dim as f64);
                let io = 2.0 * proj(n, cf, cf);
                let attn2_only = 2.0 * proj(n, cf, cf) + 2.0 * proj(l, d, cf) + 4.0 * n * l * cf;
                let attn1 = match !mid && self.only_cross_attention.contains(&px) {
                    true => attn2_only,
                    false => 4.0 * proj(n, cf, cf) + 4.0 * n * n * cf,
                };
                let attn2 = 2.0 * proj(n, cf, cf) + 2.0 * proj(l, d, cf) + 4.0 * n * l * cf;
                let ff = proj(n, cf, 8.0 * cf) + proj(n, 4.0 * cf, cf);
                io + attn1 + attn2 + ff
            }
            _ if mid || self.attention_resolutions.contains(&px) => {
                proj(n, cf, 3.0 * cf) + proj(n, cf, cf) + 4.0 * n * n * cf
            }
            _ => 0.0,
        }
    }

    /// FLOPs of the text encoder for one prompt (0 for slot models).
    fn text_flops(&self) -> f64 {
        self.text.as_ref().map_or(0.0, |t| {
            let (l, d) = (t.max_len as f64, t.dim as f64);
            let layer = 4.0 * 2.0 * l * d * d + 4.0 * l * l * d + 2.0 * 2.0 * l * d * 4.0 * d;
            t.layers as f64 * layer
        })
    }
}
