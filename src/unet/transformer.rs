//! Stable Diffusion's spatial transformer (diffusers' `Transformer2DModel` with one
//! `BasicTransformerBlock`): the feature map becomes a sequence of pixels, which attend to
//! each other, then to the text tokens, then pass a GEGLU feed-forward; each step is
//! pre-LayerNorm and residual, and the whole block is residual around GroupNorm and 1×1
//! projections.
//!
//! `forward(x [B, C, H, W], context [B, L, Ctx]) → [B, C, H, W]`.

use candle_core::{Module, Result, Tensor};
use candle_nn::VarBuilder;

use crate::nn::attention::{multi_head_attention, MultiHeadAttention};
use crate::nn::layers::{conv2d, group_norm, layer_norm, linear, Conv2d, GroupNorm, LayerNorm};
use crate::nn::{linear_add, transpose12};

/// GEGLU feed-forward: `W₂·(a ⊙ GELU(g))` with `[a, g] = W₁·x`, inner width 4C.
#[derive(Debug, Clone)]
struct FeedForward {
    proj_in: candle_nn::Linear,
    proj_out: candle_nn::Linear,
}

impl FeedForward {
    fn new(c: usize, vb: VarBuilder) -> Result<Self> {
        Ok(Self {
            proj_in: linear(c, 2 * 4 * c, vb.pp("proj_in"))?,
            proj_out: linear(4 * c, c, vb.pp("proj_out"))?,
        })
    }

    /// `x` `[B, N, C]` → `[B, N, C]`, plus `residual`.
    fn forward_add(&self, x: &Tensor, residual: &Tensor) -> Result<Tensor> {
        let h = linear_add(&self.proj_in, x, None)?; // [B, N, 8C]
        linear_add(&self.proj_out, &crate::nn::geglu(&h)?, Some(residual)) // [B, N, 4C] → [B, N, C]
    }
}

/// The spatial transformer block.
#[derive(Debug, Clone)]
pub struct SpatialTransformer {
    norm: GroupNorm,
    proj_in: Conv2d,
    norm1: LayerNorm,
    attn1: MultiHeadAttention,
    norm2: LayerNorm,
    attn2: MultiHeadAttention,
    norm3: LayerNorm,
    ff: FeedForward,
    proj_out: Conv2d,
    /// The 2D sinusoidal position signal `[1, H·W, C]` added to the tokens, if any.
    position: Option<Tensor>,
    /// attn1 attends to the text too instead of to the pixels (diffusers'
    /// `only_cross_attention`), which spares the H·W × H·W attention of a large map.
    only_cross_attention: bool,
}

/// How a spatial transformer treats its image tokens.
#[derive(Debug, Clone, Copy, Default)]
pub struct TokenOptions {
    /// The side of the map when the tokens get a position signal.
    pub position: Option<usize>,
    /// Both attentions attend to the text (diffusers' `only_cross_attention`).
    pub only_cross_attention: bool,
}

/// The fixed 2D sinusoidal position embedding of a `side`×`side` map over `c` channels
/// `[1, side², c]`: the first half of the channels encodes the row, the second the column,
/// each as sin/cos pairs at frequencies 10000^(−2i/(c/2)) (Vaswani et al. 2017, in 2D as
/// MAE's `get_2d_sincos_pos_embed`).
pub fn sincos_2d(side: usize, c: usize, device: &candle_core::Device) -> Result<Tensor> {
    let half = c / 2;
    let pairs = half / 2;
    let mut v = vec![0f32; side * side * c];
    for y in 0..side {
        for x in 0..side {
            let row = &mut v[(y * side + x) * c..][..c];
            for (offset, pos) in [(0, y), (half, x)] {
                for i in 0..pairs {
                    let f = 10000f64.powf(-(i as f64) / pairs as f64);
                    let a = pos as f64 * f;
                    row[offset + i] = a.sin() as f32;
                    row[offset + pairs + i] = a.cos() as f32;
                }
            }
        }
    }
    Tensor::from_vec(v, (1, side * side, c), device)
}

/// A block over `c` channels with `heads` heads, attending to `context_dim`-wide tokens.
pub fn spatial_transformer(
    c: usize,
    context_dim: usize,
    heads: usize,
    groups: usize,
    tokens: TokenOptions,
    vb: VarBuilder,
) -> Result<SpatialTransformer> {
    let only_cross_attention = tokens.only_cross_attention;
    let attn1_context = if only_cross_attention { context_dim } else { c };
    let position = match tokens.position {
        Some(side) => Some(sincos_2d(side, c, vb.device())?),
        None => None,
    };
    Ok(SpatialTransformer {
        position,
        only_cross_attention,
        norm: group_norm(groups, c, vb.pp("norm"))?,
        proj_in: conv2d(c, c, 1, 1, vb.pp("proj_in"))?,
        norm1: layer_norm(c, vb.pp("norm1"))?,
        attn1: multi_head_attention(c, attn1_context, heads, vb.pp("attn1"))?,
        norm2: layer_norm(c, vb.pp("norm2"))?,
        attn2: multi_head_attention(c, context_dim, heads, vb.pp("attn2"))?,
        norm3: layer_norm(c, vb.pp("norm3"))?,
        ff: FeedForward::new(c, vb.pp("ff"))?,
        proj_out: conv2d(c, c, 1, 1, vb.pp("proj_out"))?,
    })
}

impl SpatialTransformer {
    /// The pixels as a sequence: `[B, C, H, W]` → `[B, H·W, C]`.
    fn tokens(&self, xs: &Tensor) -> Result<Tensor> {
        let (b, c, h, w) = xs.dims4()?;
        let x = self.proj_in.forward(&self.norm.forward(xs, false)?)?; // [B, C, H, W]
        let x = transpose12(&x.reshape((b, c, h * w, 1))?)?.reshape((b, h * w, c))?; // [B, HW, C]
        match &self.position {
            Some(p) => x.broadcast_add(p), // [B, HW, C] + [1, HW, C]
            None => Ok(x),
        }
    }

    /// The first attention with its residual: over the pixels, or over the text with
    /// `only_cross_attention`. `x` `[B, HW, C]` → `[B, HW, C]`.
    fn attn1_add(&self, x: &Tensor, context: &Tensor) -> Result<Tensor> {
        let ctx = self.only_cross_attention.then_some(context);
        self.attn1
            .forward_add(&self.norm1.forward(x)?, ctx, Some(x))
    }

    /// `xs` `[B, C, H, W]` with text `context` `[B, L, Ctx]` → `[B, C, H, W]`.
    pub fn forward(&self, xs: &Tensor, context: &Tensor) -> Result<Tensor> {
        let (b, c, h, w) = xs.dims4()?;
        let x = self.tokens(xs)?; // [B, HW, C]
        let x = self.attn1_add(&x, context)?; // each step adds its residual in its projection

        let x = self
            .attn2
            .forward_add(&self.norm2.forward(&x)?, Some(context), Some(&x))?;
        let x = self.ff.forward_add(&self.norm3.forward(&x)?, &x)?; // [B, HW, C]
        let x = transpose12(&x.reshape((b, h * w, c, 1))?)?.reshape((b, c, h, w))?; // [B, C, H, W]
        self.proj_out.forward_add(&x, xs) // [B, C, H, W] + residual
    }

    /// The cross-attention probabilities `[B, heads, H·W, L]` this block computes for `xs`:
    /// how much each pixel attends to each text token.
    pub fn cross_attention_probs(&self, xs: &Tensor, context: &Tensor) -> Result<Tensor> {
        let x = self.tokens(xs)?;
        let x = self.attn1_add(&x, context)?;
        self.attn2.probs(&self.norm2.forward(&x)?, context)
    }
}
