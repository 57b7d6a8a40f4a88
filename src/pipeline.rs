//! Sampling a trained denoiser: classifier-free guidance around the UNet ([`Guided`]), and the
//! observed reverse loop (any [`Sampler`] from seeded noise or from a given `x_t`, with a
//! callback per step that sees x_t and the x0 prediction). Tensor work only; no files, no
//! printing.

use candle_core::Tensor;

use crate::error::Result;
use crate::rng::{self, Rng};
use crate::sampler::Sampler;
use crate::unet::{cond_tensor, Condition, UNet};

/// A network that predicts the noise (or v) of a sample: diffuse's own UNet or diffusers'
/// `UNet2DModel`. Prompts reach it as an encoded [`Condition`].
pub trait Denoiser: Send + Sync {
    /// The device the weights live on.
    fn device(&self) -> &candle_core::Device;
    /// (channels, height, width) of one sample.
    fn sample_shape(&self) -> (usize, usize, usize);
    /// Encodes condition ids `[B, slots]` or `[B, L]` (u32).
    fn condition(&self, ids: &Tensor) -> candle_core::Result<Condition>;
    /// The prediction for `x_t` `[B, C, H, W]` at timesteps `t` (B values) under `cond`.
    fn forward_conditioned(
        &self,
        x_t: &Tensor,
        t: &[f64],
        cond: &Condition,
    ) -> candle_core::Result<Tensor>;
    /// diffuse's text UNet, for its cross-attention maps.
    fn text_unet(&self) -> Option<&UNet> {
        None
    }
}

impl Denoiser for UNet {
    fn device(&self) -> &candle_core::Device {
        UNet::device(self)
    }
    fn sample_shape(&self) -> (usize, usize, usize) {
        let c = &self.config;
        (c.in_channels, c.image_size, c.image_size)
    }
    fn condition(&self, ids: &Tensor) -> candle_core::Result<Condition> {
        UNet::condition(self, ids)
    }
    fn forward_conditioned(
        &self,
        x_t: &Tensor,
        t: &[f64],
        cond: &Condition,
    ) -> candle_core::Result<Tensor> {
        UNet::forward_conditioned(self, x_t, t, cond, None)
    }
    fn text_unet(&self) -> Option<&UNet> {
        self.config.text.is_some().then_some(self)
    }
}

/// The UNet with classifier-free guidance: ε = ε_u + w·(ε_c − ε_u), computed as one batched
/// forward of 2B images. With w = 1, or a conditional batch equal to the unconditional one,
/// only the conditional half runs. The prompts are encoded once, when it is made.
pub struct Guided<'a> {
    pub model: &'a dyn Denoiser,
    /// Guidance scale w.
    pub scale: f64,
    /// The encoded prompts `[B]`.
    cond: Condition,
    /// The prompts and the unconditional (or negative) prompts `[2B]`; None when only the
    /// conditional half runs.
    both: Option<Condition>,
}

impl<'a> Guided<'a> {
    /// Guidance at `scale` for condition ids (one `Vec` per image) against `uncond_ids`;
    /// the id tensors are made on the model's device.
    pub fn new(
        model: &'a dyn Denoiser,
        scale: f64,
        cond_ids: &[Vec<u32>],
        uncond_ids: &[Vec<u32>],
    ) -> Result<Self> {
        let device = model.device();
        let b = cond_ids.len();
        let cond = cond_tensor(cond_ids, device)?; // [B, slots]
        if (scale - 1.0).abs() < 1e-12 || cond_ids == uncond_ids {
            let cond = model.condition(&cond)?;
            return Ok(Self {
                model,
                scale,
                cond,
                both: None,
            });
        }
        let uncond = cond_tensor(uncond_ids, device)?; // [B, slots]
        let both = model.condition(&Tensor::cat(&[&cond, &uncond], 0)?)?; // [2B]
        Ok(Self {
            model,
            scale,
            cond: both.narrow(0, b)?,
            both: Some(both),
        })
    }

    /// Guidance at `scale` for already encoded conditions of the same batch.
    pub fn from_conditions(
        model: &'a dyn Denoiser,
        scale: f64,
        cond: Condition,
        uncond: &Condition,
    ) -> Result<Self> {
        let both = if (scale - 1.0).abs() < 1e-12 || cond.same_as(uncond)? {
            None
        } else {
            Some(cond.cat(uncond)?)
        };
        Ok(Self {
            model,
            scale,
            cond,
            both,
        })
    }

    /// The encoded prompts and unconditional prompts, `[B]` each.
    pub fn conditions(&self) -> Result<(Condition, Condition)> {
        let b = self.cond.batch();
        let uncond = match &self.both {
            Some(both) => both.narrow(b, b)?,
            None => self.cond.clone(),
        };
        Ok((self.cond.clone(), uncond))
    }

    /// Images per batch.
    pub fn batch(&self) -> usize {
        self.cond.batch()
    }

    /// The guided prediction for `x_t` `[B, 3, H, W]` at timestep `t`.
    pub fn predict(&self, x_t: &Tensor, t: usize) -> Result<Tensor> {
        let b = x_t.dim(0)?;
        let Some(both) = &self.both else {
            return Ok(self
                .model
                .forward_conditioned(x_t, &vec![t as f64; b], &self.cond)?);
        };
        let x2 = Tensor::cat(&[x_t, x_t], 0)?; // [2B, 3, H, W]
        let out = self
            .model
            .forward_conditioned(&x2, &vec![t as f64; 2 * b], both)?;
        let (cond, uncond) = (out.narrow(0, 0, b)?, out.narrow(0, b, b)?);
        Ok((&uncond + (cond - &uncond)?.affine(self.scale, 0.0)?)?)
    }
}

/// What the observer of a sampling run sees after each step.
pub struct StepEvent<'a> {
    /// Step index, 0-based, and the number of steps.
    pub i: usize,
    pub n: usize,
    /// The timestep this step denoised from.
    pub t: usize,
    /// The sample after the step, `[B, 3, H, W]`.
    pub x: &'a Tensor,
    /// The model's x0 prediction at this step, `[B, 3, H, W]`.
    pub x0: &'a Tensor,
    /// The model's output at this step (the predicted noise ε̂ for ε-prediction models),
    /// `[B, 3, H, W]`.
    pub model_output: &'a Tensor,
}

/// Pure noise x_T `[B, C, H, W]` for the guided batch, drawn from `rng` on the model's device.
pub fn initial_noise(guided: &Guided, rng: &mut Rng) -> Result<Tensor> {
    let (c, h, w) = guided.model.sample_shape();
    let shape = (guided.batch(), c, h, w);
    rng::randn(rng, shape, guided.model.device())
}

/// The reverse loop around any noise predictor `predict(x_t, t)`: per step, draw the
/// sampler's noise (if it uses any) from `rng` and take the step.
pub fn denoise_with(
    predict: impl FnMut(&Tensor, usize) -> Result<Tensor>,
    sampler: &mut dyn Sampler,
    rng: &mut Rng,
    start: usize,
    x: Tensor,
    on_step: impl FnMut(StepEvent),
) -> Result<Tensor> {
    let (shape, device) = (x.shape().clone(), x.device().clone());
    let draw = || rng::randn(rng, shape.clone(), &device);
    denoise_drawing(predict, sampler, draw, start, x, on_step)
}

/// The reverse loop with the sampler's noise from `draw()` (called only for samplers that
/// use noise, once per step).
pub fn denoise_drawing(
    mut predict: impl FnMut(&Tensor, usize) -> Result<Tensor>,
    sampler: &mut dyn Sampler,
    mut draw: impl FnMut() -> Result<Tensor>,
    start: usize,
    mut x: Tensor,
    mut on_step: impl FnMut(StepEvent),
) -> Result<Tensor> {
    let timesteps = sampler.timesteps().to_vec();
    let n = timesteps.len();
    for (i, &t) in timesteps.iter().enumerate().skip(start) {
        let (next, x0, eps) = step_drawing(&mut predict, sampler, &mut draw, i, &x)?;
        x = next;
        on_step(StepEvent {
            i,
            n,
            t,
            x: &x,
            x0: &x0,
            model_output: &eps,
        });
    }
    Ok(x)
}

/// Step `i` of `sampler` from `x` (the sample at `timesteps()[i]`): predict, draw the
/// sampler's noise if it uses any, step. Returns (x after the step, the x0 prediction, the
/// model output), each `[B, C, H, W]`.
pub fn step_drawing(
    mut predict: impl FnMut(&Tensor, usize) -> Result<Tensor>,
    sampler: &mut dyn Sampler,
    mut draw: impl FnMut() -> Result<Tensor>,
    i: usize,
    x: &Tensor,
) -> Result<(Tensor, Tensor, Tensor)> {
    let t = sampler.timesteps()[i];
    let eps = predict(x, t)?;
    let noise = if sampler.uses_noise() {
        draw()?
    } else {
        x.zeros_like()?
    };
    let (next, x0) = sampler.step(&eps, i, x, &noise)?;
    Ok((next, x0, eps))
}

/// Step `i` of a guided run, drawing the sampler's noise from `rng` (as [`denoise_with`]
/// does, so a run taken step by step equals one taken whole).
pub fn guided_step(
    guided: &Guided,
    sampler: &mut dyn Sampler,
    rng: &mut Rng,
    i: usize,
    x: &Tensor,
) -> Result<(Tensor, Tensor, Tensor)> {
    let (shape, device) = (x.shape().clone(), x.device().clone());
    let draw = || rng::randn(rng, shape.clone(), &device);
    step_drawing(|x, t| guided.predict(x, t), sampler, draw, i, x)
}

/// SDEdit's start, with diffusers' img2img semantics: of N steps, the last
/// init = min(⌊N·strength⌋, N) run, starting at index N − init.
pub fn img2img_start(steps: usize, strength: f64) -> usize {
    let init = ((steps as f64 * strength) as usize).min(steps);
    steps - init
}

/// Runs `sampler` from pure noise drawn from `rng` for the guided batch; returns the final
/// sample `[B, C, H, W]` in model space. `on_step(i, n)` after each of the n steps.
pub fn sample(
    guided: &Guided,
    sampler: &mut dyn Sampler,
    rng: &mut Rng,
    mut on_step: impl FnMut(usize, usize),
) -> Result<Tensor> {
    let x = initial_noise(guided, rng)?; // [B, C, H, W]
    let predict = |x: &Tensor, t| guided.predict(x, t);
    denoise_with(predict, sampler, rng, 0, x, |e| on_step(e.i + 1, e.n))
}
