//! Reverse-diffusion samplers with diffusers' semantics and option names: DDPM, DDIM and
//! DPM-Solver++ (2M). Each gives its timesteps and a `step(model_output, i, x_t)` that returns
//! (x_prev, x0_pred). Schedule scalars stay f64 on the host; only samples are tensors.

pub mod ddim;
pub mod ddpm;
pub mod dpm_solver;

use std::fmt;
use std::str::FromStr;

use candle_core::Tensor;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::schedule::NoiseSchedule;
use crate::unet::Prediction;

/// diffusers' `timestep_spacing`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TimestepSpacing {
    Leading,
    Trailing,
    Linspace,
}

impl FromStr for TimestepSpacing {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "leading" => Ok(Self::Leading),
            "trailing" => Ok(Self::Trailing),
            "linspace" => Ok(Self::Linspace),
            _ => Err(Error::unknown(
                "timestep spacing",
                s,
                &["leading", "trailing", "linspace"],
            )),
        }
    }
}

impl fmt::Display for TimestepSpacing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Leading => "leading",
            Self::Trailing => "trailing",
            Self::Linspace => "linspace",
        })
    }
}

/// Which sampler.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum SamplerKind {
    #[serde(rename = "ddpm")]
    Ddpm,
    #[serde(rename = "ddim")]
    Ddim,
    #[serde(rename = "dpm++2m")]
    DpmSolverPP2M,
}

impl SamplerKind {
    /// Every sampler, in the order tables and sweeps list them.
    pub const ALL: [SamplerKind; 3] = [
        SamplerKind::Ddpm,
        SamplerKind::Ddim,
        SamplerKind::DpmSolverPP2M,
    ];
}

impl fmt::Display for SamplerKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SamplerKind::Ddpm => "ddpm",
            SamplerKind::Ddim => "ddim",
            SamplerKind::DpmSolverPP2M => "dpm++2m",
        })
    }
}

impl FromStr for SamplerKind {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "ddpm" => Ok(Self::Ddpm),
            "ddim" => Ok(Self::Ddim),
            "dpm++2m" | "dpmsolver++" | "dpm-solver++" => Ok(Self::DpmSolverPP2M),
            _ => Err(Error::unknown("sampler", s, &["ddpm", "ddim", "dpm++2m"])),
        }
    }
}

/// Options of every sampler, with diffusers' names and defaults per scheduler.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct SamplerConfig {
    pub kind: SamplerKind,
    /// Number of inference steps N.
    pub steps: usize,
    pub timestep_spacing: TimestepSpacing,
    /// Added to "leading" timesteps.
    pub steps_offset: usize,
    /// Clamp x0 predictions to [-1, 1] (DDPM, DDIM).
    pub clip_sample: bool,
    /// DDIM's η: 0 is deterministic DDIM, 1 matches DDPM's variance.
    pub eta: f64,
    /// DDIM: use ᾱ = 1 before the first step (else ᾱ_0).
    pub set_alpha_to_one: bool,
    /// DPM-Solver++: use first order at the last step(s) when N < 15 (`lower_order_final`).
    pub lower_order_final: bool,
    /// Dynamic thresholding of x0 (Saharia et al. 2022; every sampler, before `clip_sample`):
    /// s = the `dynamic_thresholding_ratio` quantile of |x0| per image, held to
    /// [1, `sample_max_value`]; x0 becomes clamp(x0, −s, s)/s.
    pub thresholding: bool,
    pub dynamic_thresholding_ratio: f64,
    pub sample_max_value: f64,
    pub prediction: Prediction,
}

impl SamplerConfig {
    /// Whether the sampler draws fresh noise at its steps (DDPM; DDIM with η > 0), so that
    /// the seed matters even when the starting state is given.
    pub fn uses_noise(&self) -> bool {
        match self.kind {
            SamplerKind::Ddpm => true,
            SamplerKind::Ddim => self.eta > 0.0,
            SamplerKind::DpmSolverPP2M => false,
        }
    }

    /// This config for a latent model: x0 is neither clipped nor thresholded (latents are
    /// not bounded to [-1, 1]; Stable Diffusion's schedulers set `clip_sample=False`).
    pub fn for_latents(self) -> Self {
        Self {
            clip_sample: false,
            thresholding: false,
            ..self
        }
    }

    /// diffusers' defaults for `kind` with `steps` steps.
    pub fn new(kind: SamplerKind, steps: usize) -> Self {
        Self {
            kind,
            steps,
            timestep_spacing: match kind {
                SamplerKind::DpmSolverPP2M => TimestepSpacing::Linspace,
                _ => TimestepSpacing::Leading,
            },
            steps_offset: 0,
            clip_sample: true,
            eta: 0.0,
            set_alpha_to_one: true,
            lower_order_final: true,
            thresholding: false,
            dynamic_thresholding_ratio: 0.995,
            sample_max_value: 1.0,
            prediction: Prediction::Epsilon,
        }
    }

    /// The sampler `kind`'s own diffusers defaults with this config's steps, η, x0
    /// treatment and prediction type; its spacing too where this config does not use its
    /// sampler's default spacing.
    pub fn with_kind(&self, kind: SamplerKind) -> Self {
        let own = Self::new(kind, self.steps);
        let default_spacing = Self::new(self.kind, self.steps).timestep_spacing;
        Self {
            eta: self.eta,
            thresholding: self.thresholding,
            clip_sample: self.clip_sample,
            prediction: self.prediction,
            steps_offset: self.steps_offset,
            timestep_spacing: if self.timestep_spacing == default_spacing {
                own.timestep_spacing
            } else {
                self.timestep_spacing
            },
            ..own
        }
    }

    /// diffusers' treatment of a predicted x0: `thresholding`, else `clip_sample` (which
    /// DPM-Solver does not have).
    pub(crate) fn process_x0(&self, x0: Tensor) -> Result<Tensor> {
        if self.thresholding {
            threshold_sample(&x0, self.dynamic_thresholding_ratio, self.sample_max_value)
        } else if self.clip_sample && self.kind != SamplerKind::DpmSolverPP2M {
            Ok(x0.clamp(-1f32, 1f32)?)
        } else {
            Ok(x0)
        }
    }
}

/// diffusers' `_threshold_sample`: per image, s = quantile(|x0|, ratio) (linear
/// interpolation, as `torch.quantile`) clamped to [1, max_value]; returns clamp(x0, −s, s)/s.
pub fn threshold_sample(x0: &Tensor, ratio: f64, max_value: f64) -> Result<Tensor> {
    let dims = x0.dims().to_vec();
    let b = dims[0];
    let flat = x0.flatten_from(1)?; // [B, C·H·W]
    let rows: Vec<Vec<f32>> = flat.to_vec2()?;
    let s: Vec<f32> = rows
        .into_iter()
        .map(|row| {
            let mut a: Vec<f32> = row.into_iter().map(f32::abs).collect();
            a.sort_by(f32::total_cmp);
            let pos = ratio * (a.len() - 1) as f64;
            let lo = pos.floor() as usize;
            let hi = (lo + 1).min(a.len() - 1);
            let q = a[lo] as f64 + (pos - lo as f64) * (a[hi] as f64 - a[lo] as f64);
            q.max(1.0).min(max_value) as f32
        })
        .collect();
    let s = Tensor::from_vec(s, (b, 1), x0.device())?; // [B, 1]
    let clamped = flat.broadcast_minimum(&s)?.broadcast_maximum(&s.neg()?)?;
    Ok(clamped.broadcast_div(&s)?.reshape(dims)?) // [B, C, H, W]
}

/// What DDPM and DDIM share: the schedule, the `set_timesteps` grid of DDPMScheduler and
/// DDIMScheduler, and the options.
pub(crate) struct DiscreteGrid<'a> {
    pub schedule: &'a NoiseSchedule,
    pub timesteps: Vec<usize>,
    pub config: SamplerConfig,
}

impl<'a> DiscreteGrid<'a> {
    pub fn new(schedule: &'a NoiseSchedule, config: &SamplerConfig) -> Self {
        Self {
            schedule,
            timesteps: ddim_timesteps(
                schedule.len(),
                config.steps,
                config.timestep_spacing,
                config.steps_offset,
            ),
            config: *config,
        }
    }
}

/// One sampler over a fixed list of timesteps.
pub trait Sampler {
    /// Timesteps from noisiest to cleanest.
    fn timesteps(&self) -> &[usize];
    /// Whether `step` uses its noise argument (DDPM, DDIM with η > 0).
    fn uses_noise(&self) -> bool;
    /// Step `i` (0-based) from `x_t` at `timesteps()[i]` given the model output there, with
    /// `noise` (same shape) for stochastic samplers. Returns (x_prev, x0_pred).
    fn step(
        &mut self,
        model_output: &Tensor,
        i: usize,
        x_t: &Tensor,
        noise: &Tensor,
    ) -> Result<(Tensor, Tensor)>;
}

/// Builds the sampler `config` describes.
pub fn build<'a>(
    config: &SamplerConfig,
    schedule: &'a NoiseSchedule,
) -> Result<Box<dyn Sampler + 'a>> {
    let t = schedule.len();
    if config.steps == 0 || config.steps > t {
        return Err(Error::out_of_range(
            "steps",
            config.steps,
            format!("1..={t} (the model's training timesteps)"),
        ));
    }
    if !(0.0..=1.0).contains(&config.eta) {
        return Err(Error::option_is(
            "eta",
            config.eta,
            "is outside [0, 1] (0 is deterministic DDIM, 1 is DDPM-like)",
        ));
    }
    Ok(match config.kind {
        SamplerKind::Ddpm => Box::new(ddpm::Ddpm::new(schedule, config)),
        SamplerKind::Ddim => Box::new(ddim::Ddim::new(schedule, config)),
        SamplerKind::DpmSolverPP2M => Box::new(dpm_solver::DpmSolverPP::new(schedule, config)),
    })
}

/// numpy's `round` (half to even), which diffusers' spacings use.
fn np_round(x: f64) -> f64 {
    x.round_ties_even()
}

/// numpy's `linspace(start, stop, n)`.
fn linspace(start: f64, stop: f64, n: usize) -> Vec<f64> {
    if n == 1 {
        return vec![start];
    }
    let step = (stop - start) / (n - 1) as f64;
    let mut v: Vec<f64> = (0..n).map(|i| i as f64 * step + start).collect();
    v[n - 1] = stop;
    v
}

/// DDPMScheduler / DDIMScheduler `set_timesteps`.
pub fn ddim_timesteps(t: usize, n: usize, spacing: TimestepSpacing, offset: usize) -> Vec<usize> {
    match spacing {
        TimestepSpacing::Linspace => linspace(0.0, (t - 1) as f64, n)
            .into_iter()
            .rev()
            .map(|v| np_round(v) as usize)
            .collect(),
        TimestepSpacing::Leading => {
            let ratio = t / n;
            (0..n).rev().map(|i| i * ratio + offset).collect()
        }
        TimestepSpacing::Trailing => trailing(t, n),
    }
}

/// `round(arange(T, 0, -T/N)) - 1`.
fn trailing(t: usize, n: usize) -> Vec<usize> {
    let ratio = t as f64 / n as f64;
    (0..n)
        .map(|k| t as f64 - k as f64 * ratio)
        .filter(|v| *v > 0.0)
        .map(|v| (np_round(v) as i64 - 1).max(0) as usize)
        .collect()
}

/// DPMSolverMultistepScheduler `set_timesteps` (no λ clipping).
pub fn dpm_timesteps(t: usize, n: usize, spacing: TimestepSpacing, offset: usize) -> Vec<usize> {
    match spacing {
        TimestepSpacing::Linspace => {
            let mut v: Vec<usize> = linspace(0.0, (t - 1) as f64, n + 1)
                .into_iter()
                .rev()
                .map(|v| np_round(v) as usize)
                .collect();
            v.pop();
            v
        }
        TimestepSpacing::Leading => {
            let ratio = t / (n + 1);
            (1..=n).rev().map(|i| i * ratio + offset).collect()
        }
        TimestepSpacing::Trailing => trailing(t, n),
    }
}

/// x0 (and ε) from a model output, for ε- or v-prediction: `a` = ᾱ_t.
pub(crate) fn predict_x0_eps(
    prediction: Prediction,
    model_output: &Tensor,
    x_t: &Tensor,
    a: f64,
) -> Result<(Tensor, Tensor)> {
    let b = 1.0 - a;
    Ok(match prediction {
        // x0 = (x_t − √(1−ᾱ)·ε) / √ᾱ
        Prediction::Epsilon => (
            (x_t - model_output.affine(b.sqrt(), 0.0)?)?.affine(1.0 / a.sqrt(), 0.0)?,
            model_output.clone(),
        ),
        // x0 = √ᾱ·x_t − √(1−ᾱ)·v;  ε = √ᾱ·v + √(1−ᾱ)·x_t
        Prediction::VPrediction => (
            (x_t.affine(a.sqrt(), 0.0)? - model_output.affine(b.sqrt(), 0.0)?)?,
            (model_output.affine(a.sqrt(), 0.0)? + x_t.affine(b.sqrt(), 0.0)?)?,
        ),
    })
}
