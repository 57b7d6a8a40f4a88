//! The autoencoder of latent diffusion: Stable Diffusion's `AutoencoderKL` in miniature, with
//! diffusers' block structure and weight names. The encoder (`DownEncoderBlock2D`s of
//! ResNets with stride-2 downsampling, a middle block of ResNet, attention, ResNet) maps a
//! picture `[B, 3, S, S]` to the mean and log-variance of a diagonal Gaussian over
//! `[B, 4, S/f, S/f]`; the decoder (`UpDecoderBlock2D`s with nearest ×2 upsampling) maps a
//! latent back. [`config`] holds its shape, [`train`] its training.

pub mod config;
pub mod train;

use candle_core::{Module, Result, Tensor};
use candle_nn::VarBuilder;

use crate::diffusers::blocks::{
    downsample, norm, resnet, spatial_attention, upsample, Downsample2D, Norm, ResnetBlock2D,
    ResnetSettings, SpatialAttention, Upsample2D,
};
use crate::nn::layers::{conv2d, Conv2d};
pub use config::AutoencoderKLConfig;

/// diffusers' GroupNorm ε in `AutoencoderKL`.
const EPS: f64 = 1e-6;

fn settings(config: &AutoencoderKLConfig) -> ResnetSettings {
    ResnetSettings {
        temb: 0,
        groups: config.norm_num_groups,
        eps: EPS,
        scale_shift: false,
        output_scale_factor: 1.0,
    }
}

/// `UNetMidBlock2D` without a timestep: ResNet, self-attention (one head), ResNet.
struct MidBlock {
    resnets: [ResnetBlock2D; 2],
    attention: Option<SpatialAttention>,
}

fn mid_block(config: &AutoencoderKLConfig, c: usize, vb: VarBuilder) -> Result<MidBlock> {
    let s = settings(config);
    let attention = match config.mid_block_add_attention {
        true => Some(spatial_attention(
            c,
            c,
            Some(config.norm_num_groups),
            EPS,
            1.0,
            vb.pp("attentions").pp(0),
        )?),
        false => None,
    };
    Ok(MidBlock {
        resnets: [
            resnet(c, c, s, vb.pp("resnets").pp(0))?,
            resnet(c, c, s, vb.pp("resnets").pp(1))?,
        ],
        attention,
    })
}

impl Module for MidBlock {
    fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        let mut h = self.resnets[0].forward_plain(xs)?;
        if let Some(a) = &self.attention {
            h = a.forward(&h)?;
        }
        self.resnets[1].forward_plain(&h)
    }
}

/// One `DownEncoderBlock2D` or `UpDecoderBlock2D`: ResNets, then the resampling conv.
struct Block<R> {
    resnets: Vec<ResnetBlock2D>,
    resample: Option<R>,
}

impl<R: Module> Module for Block<R> {
    fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        let mut h = xs.clone();
        for r in &self.resnets {
            h = r.forward_plain(&h)?;
        }
        match &self.resample {
            Some(r) => r.forward(&h),
            None => Ok(h),
        }
    }
}

/// `conv_norm_out`, SiLU and `conv_out`.
struct Head {
    norm: Norm,
    conv: Conv2d,
}

impl Module for Head {
    fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        self.conv.forward(&self.norm.forward(xs, true)?)
    }
}

fn head(config: &AutoencoderKLConfig, cin: usize, cout: usize, vb: &VarBuilder) -> Result<Head> {
    Ok(Head {
        norm: norm(config.norm_num_groups, cin, EPS, vb.pp("conv_norm_out"))?,
        conv: conv2d(cin, cout, 3, 1, vb.pp("conv_out"))?,
    })
}

/// diffusers' `Encoder` with `double_z`: a picture to the Gaussian's moments.
pub struct Encoder {
    conv_in: Conv2d,
    down_blocks: Vec<Block<Downsample2D>>,
    mid_block: MidBlock,
    head: Head,
}

fn encoder(config: &AutoencoderKLConfig, vb: VarBuilder) -> Result<Encoder> {
    let ch = &config.block_out_channels;
    let s = settings(config);
    let mut down_blocks = Vec::with_capacity(ch.len());
    let mut cin = ch[0];
    for (i, &c) in ch.iter().enumerate() {
        let vbi = vb.pp("down_blocks").pp(i);
        let resnets = (0..config.layers_per_block)
            .map(|j| resnet(if j == 0 { cin } else { c }, c, s, vbi.pp("resnets").pp(j)))
            .collect::<Result<Vec<_>>>()?;
        let last = i + 1 == ch.len();
        let resample = match last {
            true => None,
            false => Some(downsample(c, 0, vbi.pp("downsamplers").pp(0))?),
        };
        down_blocks.push(Block { resnets, resample });
        cin = c;
    }
    let top = ch[ch.len() - 1];
    Ok(Encoder {
        conv_in: conv2d(config.in_channels, ch[0], 3, 1, vb.pp("conv_in"))?,
        down_blocks,
        mid_block: mid_block(config, top, vb.pp("mid_block"))?,
        head: head(config, top, 2 * config.latent_channels, &vb)?,
    })
}

impl Module for Encoder {
    /// `[B, 3, S, S]` → `[B, 2·latent, S/f, S/f]`.
    fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        let mut h = self.conv_in.forward(xs)?; // [B, C0, S, S]
        for b in &self.down_blocks {
            h = b.forward(&h)?;
        }
        self.head.forward(&self.mid_block.forward(&h)?)
    }
}

/// diffusers' `Decoder`: a latent to a picture.
pub struct Decoder {
    conv_in: Conv2d,
    mid_block: MidBlock,
    up_blocks: Vec<Block<Upsample2D>>,
    head: Head,
}

fn decoder(config: &AutoencoderKLConfig, vb: VarBuilder) -> Result<Decoder> {
    let reversed: Vec<usize> = config.block_out_channels.iter().rev().copied().collect();
    let s = settings(config);
    let mut up_blocks = Vec::with_capacity(reversed.len());
    let mut cin = reversed[0];
    for (i, &c) in reversed.iter().enumerate() {
        let vbi = vb.pp("up_blocks").pp(i);
        let resnets = (0..config.layers_per_block + 1)
            .map(|j| resnet(if j == 0 { cin } else { c }, c, s, vbi.pp("resnets").pp(j)))
            .collect::<Result<Vec<_>>>()?;
        let resample = match i + 1 == reversed.len() {
            true => None,
            false => Some(upsample(c, vbi.pp("upsamplers").pp(0))?),
        };
        up_blocks.push(Block { resnets, resample });
        cin = c;
    }
    let bottom = reversed[reversed.len() - 1];
    Ok(Decoder {
        conv_in: conv2d(config.latent_channels, reversed[0], 3, 1, vb.pp("conv_in"))?,
        mid_block: mid_block(config, reversed[0], vb.pp("mid_block"))?,
        up_blocks,
        head: head(config, bottom, config.out_channels, &vb)?,
    })
}

impl Module for Decoder {
    /// `[B, latent, S/f, S/f]` → `[B, 3, S, S]`.
    fn forward(&self, z: &Tensor) -> Result<Tensor> {
        let mut h = self.mid_block.forward(&self.conv_in.forward(z)?)?;
        for b in &self.up_blocks {
            h = b.forward(&h)?;
        }
        self.head.forward(&h)
    }
}

/// The diagonal Gaussian the encoder gives: mean and log-variance, each `[B, 4, h, w]`.
pub struct Posterior {
    pub mean: Tensor,
    pub logvar: Tensor,
}

impl Posterior {
    /// A draw mean + σ·`eps` (the reparameterisation), with `eps` from the caller's RNG.
    pub fn sample(&self, eps: &Tensor) -> Result<Tensor> {
        let std = (&self.logvar * 0.5)?.exp()?;
        &self.mean + std.mul(eps)?
    }

    /// The KL divergence from the standard normal, summed over a latent and averaged over
    /// the batch: ½·Σ(μ² + σ² − 1 − log σ²).
    pub fn kl(&self) -> Result<Tensor> {
        let b = self.mean.dim(0)? as f64;
        let var = self.logvar.exp()?;
        let terms = ((self.mean.sqr()? + var)? - 1.0)?.sub(&self.logvar)?;
        terms.sum_all()? * (0.5 / b)
    }
}

/// Stable Diffusion's `AutoencoderKL` in miniature.
pub struct AutoencoderKL {
    pub config: AutoencoderKLConfig,
    pub encoder: Encoder,
    pub decoder: Decoder,
    quant_conv: Conv2d,
    post_quant_conv: Conv2d,
}

impl AutoencoderKL {
    /// Builds the network; `vb` names its weights as diffusers does.
    pub fn new(config: &AutoencoderKLConfig, vb: VarBuilder) -> Result<Self> {
        let z = config.latent_channels;
        Ok(Self {
            config: config.clone(),
            encoder: encoder(config, vb.pp("encoder"))?,
            decoder: decoder(config, vb.pp("decoder"))?,
            quant_conv: conv2d(2 * z, 2 * z, 1, 1, vb.pp("quant_conv"))?,
            post_quant_conv: conv2d(z, z, 1, 1, vb.pp("post_quant_conv"))?,
        })
    }

    /// The device the weights live on.
    pub fn device(&self) -> &candle_core::Device {
        self.quant_conv.weight.device()
    }

    /// The posterior of pictures `x` `[B, 3, S, S]` in [-1, 1]; log σ² is clamped to
    /// [−30, 20] as diffusers' `DiagonalGaussianDistribution` does.
    pub fn encode(&self, x: &Tensor) -> Result<Posterior> {
        let moments = self.quant_conv.forward(&self.encoder.forward(x)?)?; // [B, 2z, h, w]
        let z = self.config.latent_channels;
        Ok(Posterior {
            mean: moments.narrow(1, 0, z)?,
            logvar: moments.narrow(1, z, z)?.clamp(-30f32, 20f32)?,
        })
    }

    /// Pictures `[B, 3, S, S]` from unscaled latents `z` `[B, 4, h, w]`.
    pub fn decode(&self, z: &Tensor) -> Result<Tensor> {
        self.decoder.forward(&self.post_quant_conv.forward(z)?)
    }

    /// The diffusion latents of pictures: the posterior's mean times the scaling factor.
    pub fn to_latents(&self, x: &Tensor) -> Result<Tensor> {
        self.encode(x)?.mean.affine(self.config.scaling_factor, 0.0)
    }

    /// Pictures from diffusion latents (divided by the scaling factor, then decoded).
    pub fn from_latents(&self, z: &Tensor) -> Result<Tensor> {
        self.decode(&z.affine(1.0 / self.config.scaling_factor, 0.0)?)
    }
}
