//! diffusers' building blocks of `UNet2DModel` and `AutoencoderKL`, with their weight names:
//! `ResnetBlock2D` (with or without a timestep), the spatial self-`Attention`
//! (`to_q`/`to_k`/`to_v`/`to_out.0`, with biases), `Downsample2D` and `Upsample2D`, and the
//! `Timesteps` features.

use candle_core::{Device, Module, Result, Tensor};
use candle_nn::VarBuilder;

use crate::nn;
use crate::nn::layers::{conv2d, linear, Conv2d};

/// GroupNorm with its own ε (diffusers' `norm_eps`).
#[derive(Debug, Clone)]
pub struct Norm {
    weight: Tensor,
    bias: Tensor,
    groups: usize,
    eps: f64,
}

/// A GroupNorm's weights (γ = 1, β = 0 when a seeded builder creates them for training).
pub fn norm(groups: usize, c: usize, eps: f64, vb: VarBuilder) -> Result<Norm> {
    Ok(Norm {
        weight: vb.get_with_hints(c, "weight", candle_nn::Init::Const(1.0))?,
        bias: vb.get_with_hints(c, "bias", candle_nn::Init::Const(0.0))?,
        groups,
        eps,
    })
}

impl Norm {
    /// `[B, C, ...]`, followed by SiLU when `silu`.
    pub fn forward(&self, xs: &Tensor, silu: bool) -> Result<Tensor> {
        nn::group_norm(xs, &self.weight, &self.bias, self.groups, self.eps, silu)
    }
}

/// A ResNet that also changes the resolution (`ResnetBlock2D(down=True | up=True)`), applied
/// to its input and to its first activation: 2×2 average pooling, or nearest ×2.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resample {
    None,
    Down,
    Up,
}

impl Resample {
    fn apply(self, x: &Tensor) -> Result<Tensor> {
        match self {
            Resample::None => Ok(x.clone()),
            Resample::Down => x.avg_pool2d(2),
            Resample::Up => nn::upsample_nearest2x(x),
        }
    }
}

/// `ResnetBlock2D`: norm1·SiLU → conv1 → + time_emb_proj(SiLU(temb)) (or, with
/// `scale_shift`, norm2·(1 + scale) + shift) → norm2·SiLU → conv2, plus the (1×1) shortcut.
#[derive(Debug, Clone)]
pub struct ResnetBlock2D {
    norm1: Norm,
    conv1: Conv2d,
    /// None in an autoencoder's ResNets, which take no timestep (`temb_channels=None`).
    time_emb_proj: Option<candle_nn::Linear>,
    norm2: Norm,
    conv2: Conv2d,
    conv_shortcut: Option<Conv2d>,
    scale_shift: bool,
    output_scale_factor: f64,
    resample: Resample,
}

/// The settings every ResNet of a model shares.
#[derive(Debug, Clone, Copy)]
pub struct ResnetSettings {
    /// Timestep-embedding channels; 0 for none.
    pub temb: usize,
    pub groups: usize,
    pub eps: f64,
    pub scale_shift: bool,
    pub output_scale_factor: f64,
}

pub fn resnet(cin: usize, cout: usize, s: ResnetSettings, vb: VarBuilder) -> Result<ResnetBlock2D> {
    let proj_out = if s.scale_shift { 2 * cout } else { cout };
    Ok(ResnetBlock2D {
        norm1: norm(s.groups, cin, s.eps, vb.pp("norm1"))?,
        conv1: conv2d(cin, cout, 3, 1, vb.pp("conv1"))?,
        time_emb_proj: match s.temb {
            0 => None,
            temb => Some(linear(temb, proj_out, vb.pp("time_emb_proj"))?),
        },
        norm2: norm(s.groups, cout, s.eps, vb.pp("norm2"))?,
        conv2: conv2d(cout, cout, 3, 1, vb.pp("conv2"))?,
        conv_shortcut: match cin != cout {
            true => Some(conv2d(cin, cout, 1, 1, vb.pp("conv_shortcut"))?),
            false => None,
        },
        scale_shift: s.scale_shift,
        output_scale_factor: s.output_scale_factor,
        resample: Resample::None,
    })
}

/// A ResNet from `c` to `c` channels that halves or doubles the resolution.
pub fn resampling_resnet(
    c: usize,
    s: ResnetSettings,
    resample: Resample,
    vb: VarBuilder,
) -> Result<ResnetBlock2D> {
    Ok(ResnetBlock2D {
        resample,
        ..resnet(c, c, s, vb)?
    })
}

impl ResnetBlock2D {
    /// `xs` `[B, cin, H, W]`, `temb_act` = SiLU(temb) `[B, temb]` → `[B, cout, H, W]`.
    pub fn forward(&self, xs: &Tensor, temb_act: &Tensor) -> Result<Tensor> {
        let t = match &self.time_emb_proj {
            Some(p) => Some(p.forward(temb_act)?), // [B, c']
            None => None,
        };
        self.forward_t(xs, t)
    }

    /// An autoencoder's ResNet, without a timestep: `[B, cin, H, W]` → `[B, cout, H, W]`.
    pub fn forward_plain(&self, xs: &Tensor) -> Result<Tensor> {
        self.forward_t(xs, None)
    }

    fn forward_t(&self, xs: &Tensor, t: Option<Tensor>) -> Result<Tensor> {
        // diffusers resamples the input and the first activation, after norm1·SiLU.
        let a = self.resample.apply(&self.norm1.forward(xs, true)?)?;
        let xs = &self.resample.apply(xs)?; // [B, cin, H', W']
        let h = match t {
            Some(t) if self.scale_shift => {
                let h = self.conv1.forward(&a)?; // [B, cout, H', W']
                let t = t.unsqueeze(2)?.unsqueeze(3)?; // [B, 2·cout, 1, 1]
                let c = t.dim(1)? / 2;
                let (scale, shift) = (t.narrow(1, 0, c)?, t.narrow(1, c, c)?);
                let h = self.norm2.forward(&h, false)?;
                let h = h.broadcast_mul(&(scale + 1.0)?)?.broadcast_add(&shift)?;
                candle_nn::ops::silu(&h)?
            }
            // conv1(a) + t, added inside the convolution when sampling.
            Some(t) => self.norm2.forward(&self.conv1.forward_add(&a, &t)?, true)?,
            None => self.norm2.forward(&self.conv1.forward(&a)?, true)?,
        }; // [B, cout, H', W']
        let skip = match &self.conv_shortcut {
            Some(c) => c.forward(xs)?,
            None => xs.clone(),
        };
        let out = self.conv2.forward_add(&h, &skip)?; // conv2(h) + skip
        if self.output_scale_factor == 1.0 {
            Ok(out)
        } else {
            out.affine(1.0 / self.output_scale_factor, 0.0)
        }
    }
}

/// diffusers' `Attention` over the pixels of a feature map, as `UNet2DModel` builds it:
/// optional GroupNorm, `to_q`/`to_k`/`to_v`/`to_out.0` with biases, a residual, and
/// `rescale_output_factor`.
#[derive(Debug, Clone)]
pub struct SpatialAttention {
    group_norm: Option<Norm>,
    to_q: candle_nn::Linear,
    to_k: candle_nn::Linear,
    to_v: candle_nn::Linear,
    to_out: candle_nn::Linear,
    heads: usize,
    rescale_output_factor: f64,
}

pub fn spatial_attention(
    c: usize,
    head_dim: usize,
    groups: Option<usize>,
    eps: f64,
    rescale_output_factor: f64,
    vb: VarBuilder,
) -> Result<SpatialAttention> {
    Ok(SpatialAttention {
        group_norm: match groups {
            Some(g) => Some(norm(g, c, eps, vb.pp("group_norm"))?),
            None => None,
        },
        to_q: linear(c, c, vb.pp("to_q"))?,
        to_k: linear(c, c, vb.pp("to_k"))?,
        to_v: linear(c, c, vb.pp("to_v"))?,
        to_out: linear(c, c, vb.pp("to_out.0"))?,
        heads: c / head_dim,
        rescale_output_factor,
    })
}

impl Module for SpatialAttention {
    /// `[B, C, H, W]` → `[B, C, H, W]`.
    fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        let (b, c, h, w) = xs.dims4()?;
        let (nh, n) = (self.heads, h * w);
        let hd = c / nh;
        let normed = match &self.group_norm {
            Some(g) => g.forward(xs, false)?,
            None => xs.clone(),
        };
        let tokens = normed.reshape((b, c, n))?.transpose(1, 2)?.contiguous()?; // [B, N, C]
        let split = |t: Tensor| -> Result<Tensor> {
            t.reshape((b, n, nh, hd))?
                .transpose(1, 2)?
                .reshape((b * nh, n, hd))?
                .contiguous()
        };
        let q = split(nn::linear_add(&self.to_q, &tokens, None)?)?; // [B·nh, N, hd]
        let k = split(nn::linear_add(&self.to_k, &tokens, None)?)?; // [B·nh, N, hd]
        let v = split(nn::linear_add(&self.to_v, &tokens, None)?)?; // [B·nh, N, hd]
        let out = nn::attention::attention(&q, &k, &v, 1.0 / (hd as f64).sqrt())?; // [B·nh, N, hd]
        let out = out
            .reshape((b, nh, n, hd))?
            .transpose(1, 2)?
            .reshape((b, n, c))?;
        let out = nn::linear_add(&self.to_out, &out, None)?
            .transpose(1, 2)?
            .reshape((b, c, h, w))?; // [B, C, H, W]
        let out = (out + xs)?;
        if self.rescale_output_factor == 1.0 {
            Ok(out)
        } else {
            out.affine(1.0 / self.rescale_output_factor, 0.0)
        }
    }
}

/// `Downsample2D` with a stride-2 3×3 convolution; `padding` 0 is diffusers' asymmetric
/// padding (one row and column of zeros on the bottom and right).
#[derive(Debug, Clone)]
pub struct Downsample2D {
    conv: Conv2d,
    asymmetric: bool,
}

pub fn downsample(c: usize, padding: usize, vb: VarBuilder) -> Result<Downsample2D> {
    let mut conv = conv2d(c, c, 3, 2, vb.pp("conv"))?;
    conv.padding = padding;
    Ok(Downsample2D {
        conv,
        asymmetric: padding == 0,
    })
}

impl Module for Downsample2D {
    fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        if self.asymmetric {
            let padded = xs.pad_with_zeros(3, 0, 1)?.pad_with_zeros(2, 0, 1)?;
            return self.conv.forward(&padded);
        }
        self.conv.forward(xs) // [B, C, H/2, W/2]
    }
}

/// `Upsample2D`: nearest-neighbour ×2, then a 3×3 convolution.
#[derive(Debug, Clone)]
pub struct Upsample2D {
    conv: Conv2d,
}

pub fn upsample(c: usize, vb: VarBuilder) -> Result<Upsample2D> {
    Ok(Upsample2D {
        conv: conv2d(c, c, 3, 1, vb.pp("conv"))?,
    })
}

impl Module for Upsample2D {
    fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        self.conv.forward(&nn::upsample_nearest2x(xs)?) // [B, C, 2H, 2W]
    }
}

/// diffusers' `get_timestep_embedding` in f32 as PyTorch computes it: `[B] → [B, dim]`,
/// `[sin, cos]` of t·exp(−ln(10000)·i/(dim/2 − freq_shift)), swapped to `[cos, sin]` with
/// `flip_sin_to_cos`, zero-padded when `dim` is odd.
pub fn timestep_features(
    t: &[f64],
    dim: usize,
    flip: bool,
    shift: f64,
    device: &Device,
) -> Result<Tensor> {
    let half = dim / 2;
    let freqs: Vec<f32> = (0..half)
        .map(|i| (-(10000f32.ln()) * i as f32 / (half as f32 - shift as f32)).exp())
        .collect();
    let mut data = Vec::with_capacity(t.len() * dim);
    for &ti in t {
        let args: Vec<f32> = freqs.iter().map(|f| ti as f32 * f).collect();
        let (sin, cos): (Vec<f32>, Vec<f32>) = args.iter().map(|a| (a.sin(), a.cos())).unzip();
        let (first, second) = if flip { (cos, sin) } else { (sin, cos) };
        data.extend(first);
        data.extend(second);
        if dim % 2 == 1 {
            data.push(0.0);
        }
    }
    Tensor::from_vec(data, (t.len(), dim), device)
}
