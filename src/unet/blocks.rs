//! The UNet's blocks: ResBlock with time/condition injection, self-attention, and the
//! down/up-sampling convolutions.

use candle_core::{Module, Result, Tensor};
use candle_nn::VarBuilder;

use crate::nn;
use crate::nn::layers::{conv2d, group_norm, linear, Conv2d, GroupNorm};

/// `x → GN·SiLU → conv3 → + proj(emb) → GN·SiLU → conv3 → + skip(x)`.
#[derive(Debug, Clone)]
pub struct ResBlock {
    norm1: GroupNorm,
    conv1: Conv2d,
    emb_proj: candle_nn::Linear,
    norm2: GroupNorm,
    conv2: Conv2d,
    skip: Option<Conv2d>,
}

pub fn res_block(
    cin: usize,
    cout: usize,
    temb: usize,
    groups: usize,
    vb: VarBuilder,
) -> Result<ResBlock> {
    Ok(ResBlock {
        norm1: group_norm(groups, cin, vb.pp("norm1"))?,
        conv1: conv2d(cin, cout, 3, 1, vb.pp("conv1"))?,
        emb_proj: linear(temb, cout, vb.pp("emb_proj"))?,
        norm2: group_norm(groups, cout, vb.pp("norm2"))?,
        conv2: conv2d(cout, cout, 3, 1, vb.pp("conv2"))?,
        skip: if cin != cout {
            Some(conv2d(cin, cout, 1, 1, vb.pp("skip"))?)
        } else {
            None
        },
    })
}

impl ResBlock {
    /// `xs` `[B, cin, H, W]`, `emb_act` = SiLU(embedding) `[B, temb]` → `[B, cout, H, W]`.
    pub fn forward(&self, xs: &Tensor, emb_act: &Tensor) -> Result<Tensor> {
        let e = self.emb_proj.forward(emb_act)?; // [B, cout]
        let h = self.conv1.forward_add(&self.norm1.forward(xs, true)?, &e)?; // [B, cout, H, W]
        let skip = match &self.skip {
            Some(s) => s.forward(xs)?,
            None => xs.clone(),
        };
        // conv2(…) + skip: the residual added inside the convolution (on the CPU).
        self.conv2
            .forward_add(&self.norm2.forward(&h, true)?, &skip) // [B, cout, H, W]
    }
}

/// Multi-head self-attention over the pixels of a feature map, with a residual.
#[derive(Debug, Clone)]
pub struct Attention {
    norm: GroupNorm,
    qkv: Conv2d,
    proj: Conv2d,
    heads: usize,
}

pub fn attention(c: usize, heads: usize, groups: usize, vb: VarBuilder) -> Result<Attention> {
    Ok(Attention {
        norm: group_norm(groups, c, vb.pp("norm"))?,
        qkv: conv2d(c, 3 * c, 1, 1, vb.pp("qkv"))?,
        proj: conv2d(c, c, 1, 1, vb.pp("proj"))?,
        heads,
    })
}

impl Module for Attention {
    /// `[B, C, H, W]` → `[B, C, H, W]`.
    fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        let (b, c, h, w) = xs.dims4()?;
        let (nh, hd, n) = (self.heads, c / self.heads, h * w);
        let qkv = self.qkv.forward(&self.norm.forward(xs, false)?)?; // [B, 3C, H, W]
        let qkv = qkv.reshape((b, 3, nh, hd, n))?;
        let q = qkv.narrow(1, 0, 1)?.reshape((b * nh, hd, n))?; // [B·nh, hd, N]
        let k = qkv.narrow(1, 1, 1)?.reshape((b * nh, hd, n))?; // [B·nh, hd, N]
        let v = qkv.narrow(1, 2, 1)?.reshape((b * nh, hd, n))?; // [B·nh, hd, N]
        let scale = 1.0 / (hd as f64).sqrt();
        let att = q.transpose(1, 2)?.matmul(&k)?.affine(scale, 0.0)?; // [B·nh, N(query), N(key)]
        let att = nn::softmax::softmax_last_dim(&att)?;
        let out = v.matmul(&att.transpose(1, 2)?)?; // [B·nh, hd, N(query)]
        self.proj.forward_add(&out.reshape((b, c, h, w))?, xs) // [B, C, H, W] + residual
    }
}

/// Halves the resolution with a stride-2 3×3 convolution.
#[derive(Debug, Clone)]
pub struct Downsample {
    conv: Conv2d,
}

pub fn downsample(c: usize, vb: VarBuilder) -> Result<Downsample> {
    Ok(Downsample {
        conv: conv2d(c, c, 3, 2, vb.pp("conv"))?,
    })
}

impl Module for Downsample {
    fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        self.conv.forward(xs) // [B, C, H/2, W/2]
    }
}

/// Doubles the resolution: nearest-neighbour upsampling, then a 3×3 convolution.
#[derive(Debug, Clone)]
pub struct Upsample {
    conv: Conv2d,
}

pub fn upsample(c: usize, vb: VarBuilder) -> Result<Upsample> {
    Ok(Upsample {
        conv: conv2d(c, c, 3, 1, vb.pp("conv"))?,
    })
}

impl Module for Upsample {
    fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        self.conv.forward(&nn::upsample_nearest2x(xs)?) // [B, C, 2H, 2W]
    }
}

/// Sinusoidal timestep features `[B] → [B, dim]`: `[cos(t·f_i), sin(t·f_i)]` with
/// `f_i = 10000^(-i/(dim/2))`, as in "Attention is all you need" and diffusers' `Timesteps`.
pub fn timestep_features(t: &[f64], dim: usize, device: &candle_core::Device) -> Result<Tensor> {
    let half = dim / 2;
    let mut data = Vec::with_capacity(t.len() * dim);
    for &ti in t {
        let freqs = (0..half).map(|i| (-(10000f64.ln()) * i as f64 / half as f64).exp());
        let (cos, sin): (Vec<f32>, Vec<f32>) = freqs
            .map(|f| ((ti * f).cos() as f32, (ti * f).sin() as f32))
            .unzip();
        data.extend(cos);
        data.extend(sin);
    }
    Tensor::from_vec(data, (t.len(), dim), device)
}
