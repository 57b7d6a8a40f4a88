//! A small conditional UNet that predicts ε (or v) for 3×32×32 images.
//!
//! `forward(x_t [B,3,H,W], t [B], cond [B, slots]) → [B,3,H,W]`. The timestep enters as
//! sinusoidal features through an MLP; the prompt as the sum of one learned embedding per
//! slot (colour, shape, …, each with a null token), added to the time embedding.

pub mod blocks;
pub mod config;

use candle_core::{DType, Device, Module, Result, Tensor};
use candle_nn::{Embedding, VarBuilder};

use crate::nn::layers::{conv2d, group_norm, linear, Conv2d, GroupNorm};
use blocks::{
    attention, downsample, res_block, upsample, Attention, Downsample, ResBlock, Upsample,
};
pub use config::{Prediction, Slot, UNetConfig, Vocabulary};

/// One block on the way down or up: a ResBlock with optional attention after it.
#[derive(Debug, Clone)]
struct Stage {
    res: ResBlock,
    attn: Option<Attention>,
}

impl Stage {
    fn forward(&self, xs: &Tensor, emb: &Tensor) -> Result<Tensor> {
        let h = self.res.forward(xs, emb)?;
        match &self.attn {
            Some(a) => a.forward(&h),
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
    conv_in: Conv2d,
    down: Vec<Level<Downsample>>,
    mid: (ResBlock, Attention, ResBlock),
    up: Vec<Level<Upsample>>,
    norm_out: GroupNorm,
    conv_out: Conv2d,
}

impl UNet {
    /// Builds the network; weight names follow the fields (`down.0.res.0.conv1.weight`, …).
    /// Weights are created in a fixed order (conditions, down, mid, up, then the ends), which
    /// seeded initialisation depends on.
    pub fn new(config: &UNetConfig, vb: VarBuilder) -> crate::Result<Self> {
        config.validate()?;
        let (c0, temb, g) = (config.base_channels, config.temb_dim(), config.groups);
        let cond_embed = config
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
            .collect::<Result<Vec<_>>>()?;
        let (down, mut skips) = down_path(config, &vb)?;
        let ch = c0 * config.channel_mult.last().copied().unwrap_or(1);
        let mid = (
            res_block(ch, ch, temb, g, vb.pp("mid.res1"))?,
            attention(ch, config.num_heads, g, vb.pp("mid.attn"))?,
            res_block(ch, ch, temb, g, vb.pp("mid.res2"))?,
        );
        let up = up_path(config, &vb, &mut skips)?;
        Ok(Self {
            config: config.clone(),
            time_in: linear(c0, temb, vb.pp("time_in"))?,
            time_out: linear(temb, temb, vb.pp("time_out"))?,
            cond_embed,
            conv_in: conv2d(config.in_channels, c0, 3, 1, vb.pp("conv_in"))?,
            down,
            mid,
            up,
            norm_out: group_norm(g, c0 * config.channel_mult[0], vb.pp("norm_out"))?,
            conv_out: conv2d(
                c0 * config.channel_mult[0],
                config.in_channels,
                3,
                1,
                vb.pp("conv_out"),
            )?,
        })
    }

    /// The embedding SiLU(time MLP(t) + Σ_slots cond_embed[slot](id)) `[B, temb]`.
    fn embedding(&self, t: &[f64], cond: &Tensor, device: &Device) -> Result<Tensor> {
        let feats = blocks::timestep_features(t, self.config.base_channels, device)?; // [B, C0]
        let h = candle_nn::ops::silu(&self.time_in.forward(&feats)?)?; // [B, temb]
        let mut emb = self.time_out.forward(&h)?; // [B, temb]
        for (i, table) in self.cond_embed.iter().enumerate() {
            let ids = cond.narrow(1, i, 1)?.squeeze(1)?; // [B]
            emb = (emb + table.forward(&ids)?)?;
        }
        candle_nn::ops::silu(&emb)
    }

    /// Predicts ε (or v) for `x_t` `[B, 3, H, W]` at timesteps `t` (B values) under
    /// condition ids `cond` `[B, slots]` (u32). Returns `[B, 3, H, W]`.
    /// The device the weights live on.
    pub fn device(&self) -> &Device {
        self.conv_in.weight.device()
    }

    pub fn forward(&self, x_t: &Tensor, t: &[f64], cond: &Tensor) -> Result<Tensor> {
        let b = x_t.dim(0)?;
        if t.len() != b || cond.dims() != [b, self.cond_embed.len()] {
            candle_core::bail!(
                "unet: batch {b} needs {b} timesteps and cond [{b}, {}], got {} and {:?}",
                self.cond_embed.len(),
                t.len(),
                cond.dims()
            );
        }
        let emb = self.embedding(t, cond, x_t.device())?; // [B, temb]
        let mut h = self.conv_in.forward(x_t)?; // [B, C0, H, W]
        let mut skips = vec![h.clone()];
        for (stages, ds) in &self.down {
            for s in stages {
                h = s.forward(&h, &emb)?;
                skips.push(h.clone());
            }
            if let Some(ds) = ds {
                h = ds.forward(&h)?;
                skips.push(h.clone());
            }
        }
        h = self.mid.0.forward(&h, &emb)?;
        h = self.mid.1.forward(&h)?;
        h = self.mid.2.forward(&h, &emb)?;
        for (stages, us) in &self.up {
            for s in stages {
                let skip = skips.pop().expect("one skip per stage");
                h = s.forward(&Tensor::cat(&[&h, &skip], 1)?, &emb)?;
            }
            if let Some(us) = us {
                h = us.forward(&h)?;
            }
        }
        self.conv_out.forward(&self.norm_out.forward(&h, true)?) // [B, 3, H, W]
    }
}

/// A ResBlock from `cin` to `cout` channels at `px` pixels, with attention when the config
/// asks for it at that resolution.
fn stage(config: &UNetConfig, cin: usize, cout: usize, px: usize, vb: VarBuilder) -> Result<Stage> {
    let (temb, g) = (config.temb_dim(), config.groups);
    Ok(Stage {
        res: res_block(cin, cout, temb, g, vb.pp("res"))?,
        attn: if config.attention_resolutions.contains(&px) {
            Some(attention(cout, config.num_heads, g, vb.pp("attn"))?)
        } else {
            None
        },
    })
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
