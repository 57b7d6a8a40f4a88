//! The conditional UNet that predicts ε (or v) for `[B, C, S, S]` images.
//!
//! `forward(x_t [B,C,H,W], t [B], cond) → [B,C,H,W]`. The timestep enters as sinusoidal
//! features through an MLP, added to every ResBlock. The prompt enters one of two ways:
//! - slot models (the shapes model): `cond` `[B, slots]` holds one word id per slot, and one
//!   learned embedding per slot is added to the time embedding;
//! - text models: `cond` `[B, L]` holds token ids; the [`TextEncoder`] turns them into a
//!   context `[B, L, d]`, and [`SpatialTransformer`] blocks at the configured resolutions (and
//!   in the middle) attend to it, as in Stable Diffusion.

pub mod blocks;
pub mod condition;
pub mod config;
pub mod transformer;
mod word_maps;

use candle_core::{DType, Device, Module, Result, Tensor};
use candle_nn::{Embedding, VarBuilder};

use crate::nn::layers::{conv2d, group_norm, linear, Conv2d, GroupNorm};
use crate::text::TextEncoder;
use blocks::{
    attention, downsample, res_block, upsample, Attention, Downsample, ResBlock, Upsample,
};
pub use condition::Condition;
pub use config::{Prediction, Slot, UNetConfig, Vocabulary};
use transformer::{spatial_transformer, SpatialTransformer};

/// Cross-attention maps recorded during a forward pass: per transformer block, its
/// resolution and the probabilities `[B, heads, H·W, L]`.
pub type AttentionMaps = Vec<(usize, Tensor)>;

/// Self-attention (slot models) or a spatial transformer (text models).
#[derive(Debug, Clone)]
enum Mixer {
    SelfAttention(Attention),
    Transformer(Box<SpatialTransformer>),
}

impl Mixer {
    fn forward(
        &self,
        h: &Tensor,
        context: Option<&Tensor>,
        maps: &mut Option<&mut AttentionMaps>,
    ) -> Result<Tensor> {
        match (self, context) {
            (Mixer::SelfAttention(a), _) => a.forward(h),
            (Mixer::Transformer(t), Some(ctx)) => {
                if let Some(maps) = maps.as_deref_mut() {
                    maps.push((h.dim(3)?, t.cross_attention_probs(h, ctx)?));
                }
                t.forward(h, ctx)
            }
            (Mixer::Transformer(_), None) => {
                candle_core::bail!("unet: a transformer block needs the text context")
            }
        }
    }
}

/// One block on the way down or up: a ResBlock with optional attention after it.
#[derive(Debug, Clone)]
struct Stage {
    res: ResBlock,
    mixer: Option<Mixer>,
}

impl Stage {
    fn forward(
        &self,
        xs: &Tensor,
        emb: &Tensor,
        context: Option<&Tensor>,
        maps: &mut Option<&mut AttentionMaps>,
    ) -> Result<Tensor> {
        let h = self.res.forward(xs, emb)?;
        match &self.mixer {
            Some(m) => m.forward(&h, context, maps),
            None => Ok(h),
        }
    }
}

/// The denoiser.
#[derive(Debug, Clone)]
pub struct UNet {
    pub config: UNetConfig,
    time_in: candle_nn::Linear,
    time_out: candle_nn::Linear,
    cond_embed: Vec<Embedding>,
    text: Option<TextEncoder>,
    conv_in: Conv2d,
    down: Vec<Level<Downsample>>,
    mid: (ResBlock, Mixer, ResBlock),
    up: Vec<Level<Upsample>>,
    norm_out: GroupNorm,
    conv_out: Conv2d,
}

impl UNet {
    /// Builds the network; weight names follow the fields (`down.0.res.0.conv1.weight`, …).
    /// Weights are created in a fixed order (conditions, text, down, mid, up, then the ends),
    /// which seeded initialisation depends on.
    pub fn new(config: &UNetConfig, vb: VarBuilder) -> crate::Result<Self> {
        config.validate()?;
        let (c0, temb, g) = (config.base_channels, config.temb_dim(), config.groups);
        let cond_embed = slot_embeddings(config, &vb)?;
        let text = match &config.text {
            Some(t) => Some(TextEncoder::new(t, vb.pp("text"))?),
            None => None,
        };
        let (down, mut skips) = down_path(config, &vb)?;
        let ch = c0 * config.channel_mult.last().copied().unwrap_or(1);
        let mid = (
            res_block(ch, ch, temb, g, vb.pp("mid.res1"))?,
            mid_mixer(config, ch, vb.pp("mid.attn"))?,
            res_block(ch, ch, temb, g, vb.pp("mid.res2"))?,
        );
        let up = up_path(config, &vb, &mut skips)?;
        let c_first = c0 * config.channel_mult[0];
        Ok(Self {
            config: config.clone(),
            time_in: linear(c0, temb, vb.pp("time_in"))?,
            time_out: linear(temb, temb, vb.pp("time_out"))?,
            cond_embed,
            text,
            conv_in: conv2d(config.in_channels, c0, 3, 1, vb.pp("conv_in"))?,
            down,
            mid,
            up,
            norm_out: group_norm(g, c_first, vb.pp("norm_out"))?,
            conv_out: conv2d(c_first, config.in_channels, 3, 1, vb.pp("conv_out"))?,
        })
    }

    /// The device the weights live on.
    pub fn device(&self) -> &Device {
        self.conv_in.weight.device()
    }

    /// The embedding SiLU(time MLP(t) + Σ_slots slot embedding) `[B, temb]`.
    fn embedding(&self, t: &[f64], cond: &Condition, device: &Device) -> Result<Tensor> {
        let feats = blocks::timestep_features(t, self.config.base_channels, device)?; // [B, C0]
        let h = candle_nn::ops::silu(&self.time_in.forward(&feats)?)?; // [B, temb]
        let mut emb = self.time_out.forward(&h)?; // [B, temb]
        for slot in &cond.slots {
            emb = (emb + slot)?;
        }
        candle_nn::ops::silu(&emb)
    }

    /// Encodes condition ids `[B, slots]` or `[B, L]` (u32) once: the slot embeddings
    /// `[B, temb]` each, or the text context `[B, L, d]`.
    pub fn condition(&self, cond: &Tensor) -> Result<Condition> {
        let b = cond.dim(0)?;
        if cond.dims() != [b, self.cond_len()] {
            candle_core::bail!(
                "unet: condition ids must be [{b}, {}], got {:?}",
                self.cond_len(),
                cond.dims()
            );
        }
        let slots = (self.cond_embed.iter().enumerate())
            .map(|(i, table)| table.forward(&cond.narrow(1, i, 1)?.squeeze(1)?)) // [B, temb]
            .collect::<Result<Vec<_>>>()?;
        let context = match &self.text {
            Some(enc) => Some(enc.forward(cond)?), // [B, L, d]
            None => None,
        };
        Ok(Condition::new(slots, context, b))
    }

    /// Condition ids per image: slots for slot models, tokens for text models.
    pub fn cond_len(&self) -> usize {
        match &self.config.text {
            Some(t) => t.max_len,
            None => self.cond_embed.len(),
        }
    }

    /// Predicts ε (or v) for `x_t` `[B, C, H, W]` at timesteps `t` (B values) under
    /// condition ids `cond` `[B, slots]` or `[B, L]` (u32). Returns `[B, C, H, W]`.
    pub fn forward(&self, x_t: &Tensor, t: &[f64], cond: &Tensor) -> Result<Tensor> {
        self.forward_observed(x_t, t, cond, None)
    }

    /// [`forward`](Self::forward), also recording every cross-attention map into `maps`.
    pub fn forward_observed(
        &self,
        x_t: &Tensor,
        t: &[f64],
        cond: &Tensor,
        maps: Option<&mut AttentionMaps>,
    ) -> Result<Tensor> {
        self.forward_conditioned(x_t, t, &self.condition(cond)?, maps)
    }

    /// The prediction for `x_t` `[B, C, H, W]` at timesteps `t` (B values) under an encoded
    /// [`Condition`] of batch B, recording cross-attention maps into `maps` when given.
    pub fn forward_conditioned(
        &self,
        x_t: &Tensor,
        t: &[f64],
        cond: &Condition,
        maps: Option<&mut AttentionMaps>,
    ) -> Result<Tensor> {
        crate::nn::in_pool(|| self.layers(x_t, t, cond, maps))
    }

    /// The network itself, level by level (see [`forward_conditioned`](Self::forward_conditioned)).
    fn layers(
        &self,
        x_t: &Tensor,
        t: &[f64],
        cond: &Condition,
        mut maps: Option<&mut AttentionMaps>,
    ) -> Result<Tensor> {
        let b = x_t.dim(0)?;
        if t.len() != b || cond.batch() != b {
            candle_core::bail!(
                "unet: batch {b} needs {b} timesteps and conditions, got {} and {}",
                t.len(),
                cond.batch()
            );
        }
        let emb = self.embedding(t, cond, x_t.device())?; // [B, temb]
        let ctx = cond.context.as_ref(); // [B, L, d]
        let mut h = self.conv_in.forward(x_t)?; // [B, C0, H, W]
        let mut skips = vec![h.clone()];
        for (stages, ds) in &self.down {
            for s in stages {
                h = s.forward(&h, &emb, ctx, &mut maps)?;
                skips.push(h.clone());
            }
            if let Some(ds) = ds {
                h = ds.forward(&h)?;
                skips.push(h.clone());
            }
        }
        h = self.mid.0.forward(&h, &emb)?;
        h = self.mid.1.forward(&h, ctx, &mut maps)?;
        h = self.mid.2.forward(&h, &emb)?;
        for (stages, us) in &self.up {
            for s in stages {
                let skip = skips.pop().ok_or_else(|| {
                    candle_core::Error::msg("unet: a decoder stage lacks its skip")
                })?;
                h = s.forward(&crate::nn::cat_channels(&h, &skip)?, &emb, ctx, &mut maps)?;
            }
            if let Some(us) = us {
                h = us.forward(&h)?;
            }
        }
        self.conv_out.forward(&self.norm_out.forward(&h, true)?) // [B, C, H, W]
    }
}

/// One embedding table per prompt slot (none for text models).
fn slot_embeddings(config: &UNetConfig, vb: &VarBuilder) -> Result<Vec<Embedding>> {
    let temb = config.temb_dim();
    config
        .vocab
        .slots
        .iter()
        .enumerate()
        .map(|(i, slot)| {
            let n = slot.words.len() + 1;
            let init = candle_nn::Init::Randn {
                mean: 0.0,
                stdev: 1.0,
            };
            let w = vb
                .pp("cond_embed")
                .pp(i)
                .get_with_hints((n, temb), "weight", init)?;
            Ok(Embedding::new(w, temb))
        })
        .collect()
}

/// The middle block's attention: a spatial transformer for text models, else self-attention.
fn mid_mixer(config: &UNetConfig, c: usize, vb: VarBuilder) -> Result<Mixer> {
    let (heads, g) = (config.num_heads, config.groups);
    Ok(match &config.text {
        Some(t) => {
            let px = config.image_size >> (config.channel_mult.len() - 1);
            let tokens = config.token_options(px);
            Mixer::Transformer(Box::new(spatial_transformer(
                c, t.dim, heads, g, tokens, vb,
            )?))
        }
        None => Mixer::SelfAttention(attention(c, heads, g, vb)?),
    })
}

/// A ResBlock from `cin` to `cout` channels at `px` pixels, with attention when the config
/// asks for it at that resolution.
fn stage(config: &UNetConfig, cin: usize, cout: usize, px: usize, vb: VarBuilder) -> Result<Stage> {
    let (temb, g) = (config.temb_dim(), config.groups);
    let res = res_block(cin, cout, temb, g, vb.pp("res"))?;
    let heads = config.num_heads;
    let tokens = config.token_options(px);
    let mixer =
        match &config.text {
            Some(t) if config.cross_attention_resolutions.contains(&px) => {
                Some(Mixer::Transformer(Box::new(spatial_transformer(
                    cout,
                    t.dim,
                    heads,
                    g,
                    tokens,
                    vb.pp("attn"),
                )?)))
            }
            _ if config.attention_resolutions.contains(&px) => Some(Mixer::SelfAttention(
                attention(cout, heads, g, vb.pp("attn"))?,
            )),
            _ => None,
        };
    Ok(Stage { res, mixer })
}

type Level<T> = (Vec<Stage>, Option<T>);

/// The encoder levels, and the channel count of every skip connection they leave.
fn down_path(config: &UNetConfig, vb: &VarBuilder) -> Result<(Vec<Level<Downsample>>, Vec<usize>)> {
    let levels = config.channel_mult.len();
    let mut px = config.image_size;
    let mut ch = config.base_channels;
    let mut skips = vec![ch];
    let mut down = Vec::new();
    for (l, m) in config.channel_mult.iter().enumerate() {
        let vbl = vb.pp("down").pp(l);
        let out = config.base_channels * m;
        let mut stages = Vec::new();
        for r in 0..config.num_res_blocks {
            stages.push(stage(config, ch, out, px, vbl.pp("stages").pp(r))?);
            ch = out;
            skips.push(ch);
        }
        let ds = if l + 1 < levels {
            px /= 2;
            skips.push(ch);
            Some(downsample(ch, vbl.pp("downsample"))?)
        } else {
            None
        };
        down.push((stages, ds));
    }
    Ok((down, skips))
}

/// The decoder levels, each stage taking one skip connection from `skips`.
fn up_path(
    config: &UNetConfig,
    vb: &VarBuilder,
    skips: &mut Vec<usize>,
) -> Result<Vec<Level<Upsample>>> {
    let levels = config.channel_mult.len();
    let mut px = config.image_size >> (levels - 1);
    let mut ch = config.base_channels * config.channel_mult[levels - 1];
    let mut up = Vec::new();
    for (l, m) in config.channel_mult.iter().enumerate().rev() {
        let vbl = vb.pp("up").pp(levels - 1 - l);
        let out = config.base_channels * m;
        let mut stages = Vec::new();
        for r in 0..=config.num_res_blocks {
            let skip = skips
                .pop()
                .ok_or_else(|| candle_core::Error::msg("unet: a decoder stage lacks its skip"))?;
            stages.push(stage(config, ch + skip, out, px, vbl.pp("stages").pp(r))?);
            ch = out;
        }
        let us = if l > 0 {
            px *= 2;
            Some(upsample(ch, vbl.pp("upsample"))?)
        } else {
            None
        };
        up.push((stages, us));
    }
    Ok(up)
}

/// Counts the parameters in a var map.
pub fn parameter_count(varmap: &candle_nn::VarMap) -> usize {
    varmap.all_vars().iter().map(|v| v.elem_count()).sum()
}

/// Condition ids `[B, slots]` as a u32 tensor.
pub fn cond_tensor(ids: &[Vec<u32>], device: &Device) -> Result<Tensor> {
    let b = ids.len();
    let slots = ids.first().map_or(0, Vec::len);
    let flat: Vec<u32> = ids.iter().flatten().copied().collect();
    Tensor::from_vec(flat, (b, slots), device)?.to_dtype(DType::U32)
}
