//! Noise schedules (β_t, ᾱ_t) as diffusers defines them, and forward diffusion q(x_t | x_0).
//!
//! Scalars are computed once in f64 and stay on the host; only samples are tensors.
//! Timestep `t` is a 0-based index, as in diffusers: `x_t = √ᾱ_t·x_0 + √(1-ᾱ_t)·ε` with
//! `ᾱ_t = ∏_{s≤t} (1-β_s)`, so even t = 0 carries one step of noise.

use std::f64::consts::PI;
use std::fmt;
use std::str::FromStr;

use candle_core::Tensor;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// The β schedules of diffusers' `DDPMScheduler`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum BetaSchedule {
    /// `linspace(beta_start, beta_end, T)` (diffusers `linear`).
    Linear,
    /// `linspace(√beta_start, √beta_end, T)²` (diffusers `scaled_linear`, Stable Diffusion's).
    ScaledLinear,
    /// Nichol & Dhariwal's cosine ᾱ, β capped at 0.999 (diffusers `squaredcos_cap_v2`).
    Cosine,
    /// `sigmoid(linspace(-6, 6, T))·(beta_end - beta_start) + beta_start` (diffusers `sigmoid`).
    Sigmoid,
}

impl BetaSchedule {
    /// All schedules, in the order they are documented.
    pub const ALL: [BetaSchedule; 4] = [
        BetaSchedule::Linear,
        BetaSchedule::ScaledLinear,
        BetaSchedule::Cosine,
        BetaSchedule::Sigmoid,
    ];

    /// The name used on the command line and in JSON.
    pub fn name(self) -> &'static str {
        match self {
            BetaSchedule::Linear => "linear",
            BetaSchedule::ScaledLinear => "scaled-linear",
            BetaSchedule::Cosine => "cosine",
            BetaSchedule::Sigmoid => "sigmoid",
        }
    }
}

impl fmt::Display for BetaSchedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for BetaSchedule {
    type Err = Error;

    /// Accepts our names and diffusers' (`scaled_linear`, `squaredcos_cap_v2`).
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "linear" => Ok(BetaSchedule::Linear),
            "scaled-linear" | "scaled_linear" => Ok(BetaSchedule::ScaledLinear),
            "cosine" | "squaredcos_cap_v2" => Ok(BetaSchedule::Cosine),
            "sigmoid" => Ok(BetaSchedule::Sigmoid),
            _ => Err(Error::unknown(
                "beta schedule",
                s,
                &["linear", "scaled-linear", "cosine", "sigmoid"],
            )),
        }
    }
}

/// `--beta-schedule` where several may be shown at once: one schedule, or all four.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScheduleChoice {
    All,
    One(BetaSchedule),
}

impl ScheduleChoice {
    /// The schedules chosen, in [`BetaSchedule::ALL`] order for `All`.
    pub fn schedules(self) -> Vec<BetaSchedule> {
        match self {
            ScheduleChoice::All => BetaSchedule::ALL.to_vec(),
            ScheduleChoice::One(k) => vec![k],
        }
    }
}

impl FromStr for ScheduleChoice {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "all" => Ok(ScheduleChoice::All),
            _ => s.parse().map(ScheduleChoice::One),
        }
    }
}

impl fmt::Display for ScheduleChoice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ScheduleChoice::All => f.write_str("all"),
            ScheduleChoice::One(k) => k.fmt(f),
        }
    }
}

/// Settings of a noise schedule. Defaults are diffusers' `DDPMScheduler` defaults.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ScheduleConfig {
    /// Which β curve to use.
    pub beta_schedule: BetaSchedule,
    /// Number of diffusion steps T the model is trained with.
    pub train_timesteps: usize,
    /// β_0 (ignored by `cosine`, which is defined by ᾱ directly).
    pub beta_start: f64,
    /// β_{T-1} (ignored by `cosine`).
    pub beta_end: f64,
}

impl Default for ScheduleConfig {
    fn default() -> Self {
        Self {
            beta_schedule: BetaSchedule::Linear,
            train_timesteps: 1000,
            beta_start: 0.0001,
            beta_end: 0.02,
        }
    }
}

/// The largest β of the cosine schedule (diffusers' `max_beta`).
pub const COSINE_MAX_BETA: f64 = 0.999;

/// The largest number of training timesteps accepted.
pub const MAX_TRAIN_TIMESTEPS: usize = 100_000;

/// A computed noise schedule: β_t, α_t = 1-β_t and ᾱ_t = ∏ α_s, all in f64.
#[derive(Debug, Clone, PartialEq)]
pub struct NoiseSchedule {
    pub config: ScheduleConfig,
    pub betas: Vec<f64>,
    pub alphas: Vec<f64>,
    pub alphas_cumprod: Vec<f64>,
}

/// `n` evenly spaced points from `start` to `end` inclusive, like `torch.linspace`.
fn linspace(start: f64, end: f64, n: usize) -> Vec<f64> {
    if n == 1 {
        return vec![start];
    }
    let step = (end - start) / (n - 1) as f64;
    (0..n).map(|i| start + step * i as f64).collect()
}

/// diffusers' `betas_for_alpha_bar` with the cosine ᾱ(t) = cos²((t + 0.008)/1.008 · π/2).
fn cosine_betas(t_total: usize, max_beta: f64) -> Vec<f64> {
    let alpha_bar = |t: f64| ((t + 0.008) / 1.008 * PI / 2.0).cos().powi(2);
    let n = t_total as f64;
    (0..t_total)
        .map(|i| {
            let t1 = i as f64 / n;
            let t2 = (i + 1) as f64 / n;
            (1.0 - alpha_bar(t2) / alpha_bar(t1)).min(max_beta)
        })
        .collect()
}

impl NoiseSchedule {
    /// Computes β and ᾱ for `config`, checking its ranges first.
    pub fn new(config: ScheduleConfig) -> Result<Self> {
        let ScheduleConfig {
            beta_schedule,
            train_timesteps: t,
            beta_start: b0,
            beta_end: b1,
        } = config;
        if t == 0 || t > MAX_TRAIN_TIMESTEPS {
            return Err(Error::out_of_range(
                "train-timesteps",
                t,
                format!("(1..={MAX_TRAIN_TIMESTEPS})"),
            ));
        }
        // Cosine ignores β_start and β_end, so it does not check them either.
        let used = if beta_schedule == BetaSchedule::Cosine {
            &[][..]
        } else {
            &[("beta-start", b0), ("beta-end", b1)][..]
        };
        for &(option, b) in used {
            if !(b > 0.0 && b < 1.0) {
                return Err(Error::option_is(
                    option,
                    b,
                    "is outside (0, 1): a β is a variance fraction",
                ));
            }
        }
        if !used.is_empty() && b0 >= b1 {
            return Err(Error::option_is(
                "beta-start",
                b0,
                format!("must be smaller than --beta-end {b1}"),
            ));
        }
        let betas = match beta_schedule {
            BetaSchedule::Linear => linspace(b0, b1, t),
            BetaSchedule::ScaledLinear => linspace(b0.sqrt(), b1.sqrt(), t)
                .into_iter()
                .map(|b| b * b)
                .collect(),
            BetaSchedule::Cosine => cosine_betas(t, COSINE_MAX_BETA),
            BetaSchedule::Sigmoid => linspace(-6.0, 6.0, t)
                .into_iter()
                .map(|x| 1.0 / (1.0 + (-x).exp()) * (b1 - b0) + b0)
                .collect(),
        };
        let alphas: Vec<f64> = betas.iter().map(|b| 1.0 - b).collect();
        let alphas_cumprod = alphas
            .iter()
            .scan(1.0, |acc, a| {
                *acc *= a;
                Some(*acc)
            })
            .collect();
        Ok(Self {
            config,
            betas,
            alphas,
            alphas_cumprod,
        })
    }

    /// Number of training timesteps T.
    pub fn len(&self) -> usize {
        self.betas.len()
    }

    /// Always false: a schedule has at least one step.
    pub fn is_empty(&self) -> bool {
        self.betas.is_empty()
    }

    /// Checks that `t` is a valid timestep index.
    pub fn check_timestep(&self, t: i64) -> Result<usize> {
        let last = self.len() - 1;
        if t < 0 || t as usize > last {
            return Err(Error::Timestep {
                timestep: t,
                last,
                len: self.len(),
            });
        }
        Ok(t as usize)
    }

    /// Signal-to-noise ratio SNR(t) = ᾱ_t / (1 - ᾱ_t).
    pub fn snr(&self, t: usize) -> f64 {
        let a = self.alphas_cumprod[t];
        a / (1.0 - a)
    }

    /// log SNR(t), the natural log.
    pub fn log_snr(&self, t: usize) -> f64 {
        self.snr(t).ln()
    }

    /// Forward diffusion in closed form, batched with one timestep per sample:
    /// `x_t = √ᾱ_t·x0 + √(1-ᾱ_t)·noise`.
    ///
    /// `x0` and `noise` are `[B, ...]` on any device; `t` has B entries. Returns `[B, ...]`.
    pub fn q_sample(&self, x0: &Tensor, t: &[usize], noise: &Tensor) -> Result<Tensor> {
        let b = x0.dim(0)?;
        if t.len() != b {
            return Err(Error::BatchMismatch {
                what: "q_sample",
                got: t.len(),
                batch: b,
            });
        }
        let mut coef_shape = vec![1usize; x0.rank()];
        coef_shape[0] = b;
        let (mut sa, mut s1a) = (Vec::with_capacity(b), Vec::with_capacity(b));
        for &ti in t {
            self.check_timestep(ti as i64)?;
            sa.push(self.alphas_cumprod[ti].sqrt() as f32);
            s1a.push((1.0 - self.alphas_cumprod[ti]).sqrt() as f32);
        }
        let dev = x0.device();
        let sa = Tensor::from_vec(sa, coef_shape.as_slice(), dev)?.to_dtype(x0.dtype())?; // [B, 1, ...]
        let s1a = Tensor::from_vec(s1a, coef_shape.as_slice(), dev)?.to_dtype(x0.dtype())?; // [B, 1, ...]
        let xt = x0.broadcast_mul(&sa)?.add(&noise.broadcast_mul(&s1a)?)?; // [B, ...]
        Ok(xt)
    }

    /// One Markov step q(x_t | x_{t-1}) = N(√(1-β_t)·x_{t-1}, β_t·I), with the given noise.
    ///
    /// `x_prev` and `noise` have the same shape; the result does too.
    pub fn q_step(&self, x_prev: &Tensor, t: usize, noise: &Tensor) -> Result<Tensor> {
        self.check_timestep(t as i64)?;
        let beta = self.betas[t];
        let x_t = (x_prev.affine((1.0 - beta).sqrt(), 0.0)? + noise.affine(beta.sqrt(), 0.0)?)?;
        Ok(x_t)
    }
}
