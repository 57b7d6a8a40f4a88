//! A small transformer text encoder: token and position embeddings, then pre-LayerNorm
//! layers of self-attention and a GELU MLP, then a final LayerNorm. `[B, L]` token ids →
//! `[B, L, dim]` context for the UNet's cross-attention. It trains jointly with the UNet.

use candle_core::{Module, Result, Tensor};
use candle_nn::{Embedding, Init, VarBuilder};

use super::TextConfig;
use crate::nn::attention::{multi_head_attention, MultiHeadAttention};
use crate::nn::layers::{layer_norm, linear, LayerNorm};

/// One encoder layer: `x + attn(LN(x))`, then `x + MLP(LN(x))`.
#[derive(Debug, Clone)]
struct Layer {
    norm1: LayerNorm,
    attn: MultiHeadAttention,
    norm2: LayerNorm,
    fc1: candle_nn::Linear,
    fc2: candle_nn::Linear,
}

impl Layer {
    fn new(cfg: &TextConfig, vb: VarBuilder) -> Result<Self> {
        let d = cfg.dim;
        Ok(Self {
            norm1: layer_norm(d, vb.pp("norm1"))?,
            attn: multi_head_attention(d, d, cfg.heads, vb.pp("attn"))?,
            norm2: layer_norm(d, vb.pp("norm2"))?,
            fc1: linear(d, 4 * d, vb.pp("fc1"))?,
            fc2: linear(4 * d, d, vb.pp("fc2"))?,
        })
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let x = (x + self.attn.forward(&self.norm1.forward(x)?, None)?)?; // [B, L, d]
        let h = self.fc1.forward(&self.norm2.forward(&x)?)?.gelu_erf()?; // [B, L, 4d]
        x + self.fc2.forward(&h)?
    }
}

/// The text encoder.
#[derive(Debug, Clone)]
pub struct TextEncoder {
    token_embed: Embedding,
    pos_embed: Tensor, // [L, d]
    layers: Vec<Layer>,
    norm: LayerNorm,
}

impl TextEncoder {
    /// Builds the encoder; weights are `token_embed`, `pos_embed`, `layers.N.*`, `norm`.
    pub fn new(cfg: &TextConfig, vb: VarBuilder) -> Result<Self> {
        let init = Init::Randn {
            mean: 0.0,
            stdev: 0.02,
        };
        let tok = vb.get_with_hints((cfg.vocab.len(), cfg.dim), "token_embed.weight", init)?;
        let pos_embed = vb.get_with_hints((cfg.max_len, cfg.dim), "pos_embed", init)?;
        let layers = (0..cfg.layers)
            .map(|i| Layer::new(cfg, vb.pp("layers").pp(i)))
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            token_embed: Embedding::new(tok, cfg.dim),
            pos_embed,
            layers,
            norm: layer_norm(cfg.dim, vb.pp("norm"))?,
        })
    }

    /// Token ids `[B, L]` (u32) → context `[B, L, dim]`.
    pub fn forward(&self, ids: &Tensor) -> Result<Tensor> {
        let (_, l) = ids.dims2()?;
        let pos = self.pos_embed.narrow(0, 0, l)?; // [L, d]
        let mut x = self.token_embed.forward(ids)?.broadcast_add(&pos)?; // [B, L, d]
        for layer in &self.layers {
            x = layer.forward(&x)?;
        }
        self.norm.forward(&x)
    }
}
