//! diffusers' `UNet2DModel` (pixel-space DDPM/DDIM models such as `google/ddpm-cifar10-32`):
//! `forward(sample [B, C, H, W], timesteps [B], class_labels) → [B, C, H, W]`, with diffusers'
//! weight names so its `diffusion_pytorch_model.safetensors` loads as it is.

use candle_core::{Module, Result, Tensor};
use candle_nn::{Embedding, VarBuilder};

use super::blocks::{
    downsample, norm, resampling_resnet, resnet, spatial_attention, timestep_features, upsample,
    Downsample2D, Norm, Resample, ResnetBlock2D, ResnetSettings, SpatialAttention, Upsample2D,
};
use super::config::UNet2DConfig;
use crate::nn::layers::{conv2d, linear, Conv2d};
use crate::pipeline::Denoiser;
use crate::unet::Condition;

/// How a block changes the resolution: diffusers' convolution blocks, or a ResNet that
/// resamples (`ResnetDownsampleBlock2D`, `ResnetUpsampleBlock2D`).
#[derive(Debug, Clone)]
enum Resampler<C> {
    Conv(C),
    Resnet(ResnetBlock2D),
}

impl<C: Module> Resampler<C> {
    fn forward(&self, h: &Tensor, temb: &Tensor) -> Result<Tensor> {
        match self {
            Resampler::Conv(c) => c.forward(h),
            Resampler::Resnet(r) => r.forward(h, temb),
        }
    }
}

/// One down or up block: ResNets, each followed by attention in `Attn…` blocks, then the
/// resampler.
#[derive(Debug, Clone)]
struct Block<R> {
    resnets: Vec<ResnetBlock2D>,
    attentions: Vec<SpatialAttention>,
    resample: Option<Resampler<R>>,
}

impl<R> Block<R> {
    /// ResNet `i` (and its attention) on `h`.
    fn layer(&self, i: usize, h: &Tensor, temb: &Tensor) -> Result<Tensor> {
        let h = self.resnets[i].forward(h, temb)?;
        match self.attentions.get(i) {
            Some(a) => a.forward(&h),
            None => Ok(h),
        }
    }
}

/// The network.
#[derive(Debug, Clone)]
pub struct UNet2DModel {
    pub config: UNet2DConfig,
    conv_in: Conv2d,
    /// `time_embedding_type = learned`: a row of features per training timestep
    /// `[num_train_timesteps, C0]` (`time_proj.weight`), in place of the sinusoids.
    time_proj: Option<Embedding>,
    linear_1: candle_nn::Linear,
    linear_2: candle_nn::Linear,
    class_embedding: Option<Embedding>,
    down: Vec<Block<Downsample2D>>,
    mid: (ResnetBlock2D, Option<SpatialAttention>, ResnetBlock2D),
    up: Vec<Block<Upsample2D>>,
    conv_norm_out: Norm,
    conv_out: Conv2d,
}

fn attention_of(
    config: &UNet2DConfig,
    c: usize,
    groups: Option<usize>,
    vb: VarBuilder,
) -> Result<SpatialAttention> {
    spatial_attention(c, config.head_dim(c), groups, config.norm_eps, 1.0, vb)
}

/// The attention of an `Attn*Block2D` at `c` channels, with the config's GroupNorm.
fn block_attention(config: &UNet2DConfig, c: usize, vb: VarBuilder) -> Result<SpatialAttention> {
    attention_of(config, c, Some(config.norm_num_groups), vb)
}

fn down_blocks(
    config: &UNet2DConfig,
    s: ResnetSettings,
    vb: &VarBuilder,
) -> Result<Vec<Block<Downsample2D>>> {
    let chans = &config.block_out_channels;
    let mut out = Vec::new();
    let mut cin = chans[0];
    for (i, kind) in config.down_block_types.iter().enumerate() {
        let (c, vbi) = (chans[i], vb.pp("down_blocks").pp(i));
        let mut block = Block {
            resnets: Vec::new(),
            attentions: Vec::new(),
            resample: None,
        };
        for j in 0..config.layers_per_block {
            let cj = if j == 0 { cin } else { c };
            block
                .resnets
                .push(resnet(cj, c, s, vbi.pp("resnets").pp(j))?);
            if kind == "AttnDownBlock2D" {
                let vb = vbi.pp("attentions").pp(j);
                block.attentions.push(block_attention(config, c, vb)?);
            }
        }
        if i + 1 < chans.len() {
            let vbd = vbi.pp("downsamplers.0");
            block.resample = Some(match kind.as_str() {
                "ResnetDownsampleBlock2D" => {
                    Resampler::Resnet(resampling_resnet(c, s, Resample::Down, vbd)?)
                }
                _ => Resampler::Conv(downsample(c, config.downsample_padding, vbd)?),
            });
        }
        out.push(block);
        cin = c;
    }
    Ok(out)
}

fn up_blocks(
    config: &UNet2DConfig,
    s: ResnetSettings,
    vb: &VarBuilder,
) -> Result<Vec<Block<Upsample2D>>> {
    let rev: Vec<usize> = config.block_out_channels.iter().rev().copied().collect();
    let n = rev.len();
    let mut out = Vec::new();
    let mut prev = rev[0];
    for (i, kind) in config.up_block_types.iter().enumerate() {
        let (c, vbi) = (rev[i], vb.pp("up_blocks").pp(i));
        let input = rev[(i + 1).min(n - 1)];
        let layers = config.layers_per_block + 1;
        let mut block = Block {
            resnets: Vec::new(),
            attentions: Vec::new(),
            resample: None,
        };
        for j in 0..layers {
            let skip = if j == layers - 1 { input } else { c };
            let cin = if j == 0 { prev } else { c };
            block
                .resnets
                .push(resnet(cin + skip, c, s, vbi.pp("resnets").pp(j))?);
            if kind == "AttnUpBlock2D" {
                let vb = vbi.pp("attentions").pp(j);
                block.attentions.push(block_attention(config, c, vb)?);
            }
        }
        if i + 1 < n {
            let vbu = vbi.pp("upsamplers.0");
            block.resample = Some(match kind.as_str() {
                "ResnetUpsampleBlock2D" => {
                    Resampler::Resnet(resampling_resnet(c, s, Resample::Up, vbu)?)
                }
                _ => Resampler::Conv(upsample(c, vbu)?),
            });
        }
        out.push(block);
        prev = c;
    }
    Ok(out)
}

/// The learned time features of `t` `[B, C0]`: rows of `table`, which diffusers indexes by
/// the integer timestep; any other `t` is an error.
fn learned_features(table: &Embedding, t: &[f64], device: &candle_core::Device) -> Result<Tensor> {
    let rows = table.embeddings().dim(0)?;
    let ids = t
        .iter()
        .map(
            |&ti| match ti.fract() == 0.0 && ti >= 0.0 && (ti as usize) < rows {
                true => Ok(ti as u32),
                false => Err(candle_core::Error::msg(format!(
                "this model's learned time embedding has rows for the timesteps 0..{rows}, not {ti}"
            ))),
            },
        )
        .collect::<Result<Vec<u32>>>()?;
    let n = ids.len();
    table.forward(&Tensor::from_vec(ids, n, device)?)
}

impl UNet2DModel {
    /// Builds the network from a checked `config`, reading diffusers' weight names from `vb`.
    pub fn new(config: &UNet2DConfig, vb: VarBuilder) -> crate::Result<Self> {
        config.validate()?;
        let (c0, temb) = (config.block_out_channels[0], config.time_embed_dim());
        let s = ResnetSettings {
            temb,
            groups: config.norm_num_groups,
            eps: config.norm_eps,
            scale_shift: config.resnet_time_scale_shift == "scale_shift",
            output_scale_factor: 1.0,
        };
        let c_last = *config.block_out_channels.last().unwrap_or(&c0);
        // The middle attention's GroupNorm: attn_norm_num_groups, else the ResNets' groups
        // under the "default" time shift and none under "scale_shift".
        let attn_groups = config
            .attn_norm_num_groups
            .or((!s.scale_shift).then_some(config.norm_num_groups));
        let mid_s = ResnetSettings {
            output_scale_factor: config.mid_block_scale_factor,
            ..s
        };
        let mid_attn = match config.add_attention {
            true => Some(spatial_attention(
                c_last,
                config.head_dim(c_last),
                attn_groups,
                config.norm_eps,
                config.mid_block_scale_factor,
                vb.pp("mid_block.attentions.0"),
            )?),
            false => None,
        };
        Ok(Self {
            conv_in: conv2d(config.in_channels, c0, 3, 1, vb.pp("conv_in"))?,
            time_proj: match config.time_embedding_type.as_str() {
                "learned" => {
                    let n = config.num_train_timesteps.unwrap_or(0);
                    Some(Embedding::new(
                        vb.pp("time_proj").get((n, c0), "weight")?,
                        c0,
                    ))
                }
                _ => None,
            },
            linear_1: linear(c0, temb, vb.pp("time_embedding.linear_1"))?,
            linear_2: linear(temb, temb, vb.pp("time_embedding.linear_2"))?,
            class_embedding: match config.num_class_embeds {
                Some(n) => Some(Embedding::new(
                    vb.pp("class_embedding").get((n, temb), "weight")?,
                    temb,
                )),
                None => None,
            },
            down: down_blocks(config, s, &vb)?,
            mid: (
                resnet(c_last, c_last, mid_s, vb.pp("mid_block.resnets.0"))?,
                mid_attn,
                resnet(c_last, c_last, mid_s, vb.pp("mid_block.resnets.1"))?,
            ),
            up: up_blocks(config, s, &vb)?,
            conv_norm_out: norm(
                config.norm_num_groups,
                c0,
                config.norm_eps,
                vb.pp("conv_norm_out"),
            )?,
            conv_out: conv2d(c0, config.out_channels, 3, 1, vb.pp("conv_out"))?,
            config: config.clone(),
        })
    }

    /// SiLU(time embedding (+ class embedding)) `[B, temb]`, what every ResNet takes.
    fn embedding(&self, t: &[f64], cond: &Condition, x: &Tensor) -> Result<Tensor> {
        let c0 = self.config.block_out_channels[0];
        let cfg = &self.config;
        let feats = match &self.time_proj {
            Some(table) => learned_features(table, t, x.device())?,
            None => timestep_features(t, c0, cfg.flip_sin_to_cos, cfg.freq_shift, x.device())?,
        }; // [B, C0]
        let h = candle_nn::ops::silu(&self.linear_1.forward(&feats)?)?;
        let mut emb = self.linear_2.forward(&h)?; // [B, temb]
        for class_emb in &cond.slots {
            emb = (emb + class_emb)?;
        }
        candle_nn::ops::silu(&emb)
    }

    /// The class embeddings of `class_labels` `[B]` (u32) `[B, temb]` as a [`Condition`];
    /// none for an unconditional model.
    pub fn class_condition(
        &self,
        class_labels: Option<&Tensor>,
        batch: usize,
    ) -> Result<Condition> {
        match (&self.class_embedding, class_labels) {
            (Some(table), Some(labels)) => {
                let n = self.config.num_class_embeds.unwrap_or(0) as u32;
                let max = labels.max(0)?.to_scalar::<u32>()?;
                if max >= n {
                    candle_core::bail!(
                        "this class-conditional model needs a class number as the prompt (0..={}) and --guidance 1: it has no unconditional class for guidance",
                        n.saturating_sub(1)
                    );
                }
                Ok(Condition::new(vec![table.forward(labels)?], None, batch))
            }
            (Some(_), None) => {
                candle_core::bail!("this model is class-conditional: give it a class label")
            }
            (None, Some(_)) => {
                candle_core::bail!("this model has no class embedding: give no class label")
            }
            (None, None) => Ok(Condition::new(Vec::new(), None, batch)),
        }
    }

    /// Predicts the model output for `sample` `[B, C, H, W]` at `timesteps` (B values), with
    /// `class_labels` `[B]` (u32) for class-conditional models. Returns `[B, C, H, W]`.
    pub fn forward(
        &self,
        sample: &Tensor,
        timesteps: &[f64],
        class_labels: Option<&Tensor>,
    ) -> Result<Tensor> {
        let cond = self.class_condition(class_labels, sample.dim(0)?)?;
        self.forward_with(sample, timesteps, &cond)
    }

    /// [`forward`](Self::forward) under an encoded condition (the class embeddings).
    pub fn forward_with(
        &self,
        sample: &Tensor,
        timesteps: &[f64],
        cond: &Condition,
    ) -> Result<Tensor> {
        crate::nn::in_pool(|| self.layers(sample, timesteps, cond))
    }

    /// The network itself, block by block, on one of rayon's threads (see [`crate::nn::in_pool`]).
    fn layers(&self, sample: &Tensor, timesteps: &[f64], cond: &Condition) -> Result<Tensor> {
        let sample = match self.config.center_input_sample {
            true => sample.affine(2.0, -1.0)?,
            false => sample.clone(),
        };
        let temb = self.embedding(timesteps, cond, &sample)?; // [B, temb]
        let mut h = self.conv_in.forward(&sample)?; // [B, C0, H, W]
        let mut skips = vec![h.clone()];
        for block in &self.down {
            for i in 0..block.resnets.len() {
                h = block.layer(i, &h, &temb)?;
                skips.push(h.clone());
            }
            if let Some(d) = &block.resample {
                h = d.forward(&h, &temb)?;
                skips.push(h.clone());
            }
        }
        h = self.mid.0.forward(&h, &temb)?;
        if let Some(a) = &self.mid.1 {
            h = a.forward(&h)?;
        }
        h = self.mid.2.forward(&h, &temb)?;
        for block in &self.up {
            for i in 0..block.resnets.len() {
                let skip = skips
                    .pop()
                    .ok_or_else(|| candle_core::Error::msg("unet2d: an up block lacks its skip"))?;
                h = block.layer(i, &crate::nn::cat_channels(&h, &skip)?, &temb)?;
            }
            if let Some(u) = &block.resample {
                h = u.forward(&h, &temb)?;
            }
        }
        self.conv_out
            .forward(&self.conv_norm_out.forward(&h, true)?) // [B, C, H, W]
    }
}

impl Denoiser for UNet2DModel {
    fn device(&self) -> &candle_core::Device {
        self.conv_in.weight.device()
    }

    fn sample_shape(&self) -> (usize, usize, usize) {
        let side = self.config.sample_size.unwrap_or(32);
        (self.config.in_channels, side, side)
    }

    /// Condition ids `[B, 1]` are class labels for a class-conditional model; an
    /// unconditional model takes `[B, 0]`.
    fn condition(&self, ids: &Tensor) -> Result<Condition> {
        let (b, k) = ids.dims2()?;
        match k {
            0 => self.class_condition(None, b),
            _ => self.class_condition(Some(&ids.narrow(1, 0, 1)?.squeeze(1)?), b),
        }
    }

    fn forward_conditioned(&self, x_t: &Tensor, t: &[f64], cond: &Condition) -> Result<Tensor> {
        self.forward_with(x_t, t, cond)
    }
}
