//! Forward diffusion of one image along a schedule: the frames x_t for chosen timesteps,
//! either from one shared noise draw (closed form) or from the Markov chain q(x_t | x_{t-1}).

use candle_core::Tensor;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::rng::{self, Rng};
use crate::schedule::NoiseSchedule;

/// How the noise of successive frames relates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum NoiseMode {
    /// One ε for every frame: `x_t = √ᾱ_t·x0 + √(1-ᾱ_t)·ε`, so the same noise grows.
    Shared,
    /// Run `x_t = √(1-β_t)·x_{t-1} + √β_t·ε_t` step by step with fresh noise each step.
    Markov,
}

/// The frames of a forward-diffusion run, all in model space ([-1, 1] for the clean image).
pub struct Trajectory {
    /// The clean image, `[3, H, W]`.
    pub x0: Tensor,
    /// The noise ε: the shared draw, or for `Markov` the ε that gives the last frame in
    /// closed form, `(x_t - √ᾱ_t·x0) / √(1-ᾱ_t)`. `[3, H, W]`.
    pub noise: Tensor,
    /// One unclamped frame per timestep, each `[3, H, W]`, in increasing t.
    pub x_t: Vec<Tensor>,
    /// The timesteps of `x_t`.
    pub timesteps: Vec<usize>,
}

impl Trajectory {
    /// All frames stacked, `[N, 3, H, W]`.
    pub fn stacked(&self) -> Result<Tensor> {
        Ok(Tensor::stack(&self.x_t, 0)?)
    }
}

/// `n` timesteps spaced evenly from 0 to T-1 inclusive (rounded), in increasing order.
pub fn evenly_spaced_timesteps(n: usize, train_timesteps: usize) -> Result<Vec<usize>> {
    if n == 0 {
        return Err(Error::option("frames", 0, "at least one frame is needed"));
    }
    if n > train_timesteps {
        return Err(Error::option_is(
            "frames",
            n,
            format!("is more than the {train_timesteps} training timesteps"),
        ));
    }
    if n == 1 {
        return Ok(vec![0]);
    }
    let last = (train_timesteps - 1) as f64;
    Ok((0..n)
        .map(|i| (i as f64 * last / (n - 1) as f64).round() as usize)
        .collect())
}

/// How `diffuse noise` spaces its frames over t.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FrameSpacing {
    /// Even steps of the picture's share √ᾱ_t, from 1 down to √ᾱ_{T−1}: the picture fades
    /// evenly from frame to frame.
    Signal,
    /// Even steps of t.
    Linear,
}

impl std::str::FromStr for FrameSpacing {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "signal" => Ok(Self::Signal),
            "linear" => Ok(Self::Linear),
            _ => Err(Error::unknown("frame spacing", s, &["signal", "linear"])),
        }
    }
}

impl std::fmt::Display for FrameSpacing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Signal => "signal",
            Self::Linear => "linear",
        })
    }
}

/// `n` timesteps from 0 to T−1 at even steps of √ᾱ_t (each the timestep whose √ᾱ_t is
/// nearest the target), in increasing order, repeats dropped.
pub fn signal_spaced_timesteps(n: usize, schedule: &NoiseSchedule) -> Result<Vec<usize>> {
    evenly_spaced_timesteps(n, schedule.len())?; // the same checks
    let amp: Vec<f64> = schedule.alphas_cumprod.iter().map(|a| a.sqrt()).collect();
    let (hi, lo) = (amp[0], amp[amp.len() - 1]);
    let mut ts: Vec<usize> = (0..n)
        .map(|i| {
            let target = hi - (hi - lo) * i as f64 / (n - 1).max(1) as f64;
            // √ᾱ_t falls with t: the first t at or below the target, or the one just before.
            let k = amp.partition_point(|a| *a > target).min(amp.len() - 1);
            if k > 0 && (amp[k - 1] - target).abs() < (amp[k] - target).abs() {
                k - 1
            } else {
                k
            }
        })
        .collect();
    ts.dedup();
    Ok(ts)
}

/// Checks user timesteps against the schedule, then sorts them and drops repeats.
pub fn checked_timesteps(schedule: &NoiseSchedule, raw: &[i64]) -> Result<Vec<usize>> {
    if raw.is_empty() {
        return Err(Error::option("timesteps", "''", "the list is empty"));
    }
    let mut ts = raw
        .iter()
        .map(|&t| schedule.check_timestep(t))
        .collect::<Result<Vec<_>>>()?;
    ts.sort_unstable();
    ts.dedup();
    Ok(ts)
}

/// Diffuses `x0` (`[3, H, W]`) to each of `timesteps` (sorted, unique), keeping every frame.
///
/// `on_step` is called after each unit of work with (done, total): frames for `Shared`,
/// chain steps for `Markov`.
pub fn diffuse(
    schedule: &NoiseSchedule,
    x0: &Tensor,
    timesteps: &[usize],
    mode: NoiseMode,
    rng: &mut Rng,
    on_step: impl FnMut(usize, usize),
) -> Result<Trajectory> {
    let mut x_t = Vec::with_capacity(timesteps.len());
    let noise = diffuse_observed(
        schedule,
        x0,
        timesteps,
        mode,
        rng,
        |_, x| {
            x_t.push(x.clone());
            Ok(())
        },
        on_step,
    )?;
    Ok(Trajectory {
        x0: x0.clone(),
        noise,
        x_t,
        timesteps: timesteps.to_vec(),
    })
}

/// Like [`diffuse`], but hands each frame `x_t` `[3, H, W]` to `on_frame(index, x_t)` as it
/// is made instead of keeping it, so memory does not grow with the frame count. Returns the
/// noise ε (see [`Trajectory::noise`]).
pub fn diffuse_observed(
    schedule: &NoiseSchedule,
    x0: &Tensor,
    timesteps: &[usize],
    mode: NoiseMode,
    rng: &mut Rng,
    mut on_frame: impl FnMut(usize, &Tensor) -> Result<()>,
    mut on_step: impl FnMut(usize, usize),
) -> Result<Tensor> {
    let Some(&t_max) = timesteps.last() else {
        return Err(Error::option("timesteps", "''", "the list is empty"));
    };
    let device = x0.device();
    let shape = x0.shape().clone(); // [3, H, W]
    match mode {
        NoiseMode::Shared => {
            let eps = rng::randn(rng, shape, device)?; // [3, H, W]
            let x0_b = x0.unsqueeze(0)?; // [1, 3, H, W]
            let eps_b = eps.unsqueeze(0)?; // [1, 3, H, W]
            for (i, &t) in timesteps.iter().enumerate() {
                let xt = schedule.q_sample(&x0_b, &[t], &eps_b)?; // [1, 3, H, W]
                on_frame(i, &xt.squeeze(0)?)?;
                on_step(i + 1, timesteps.len());
            }
            Ok(eps)
        }
        NoiseMode::Markov => {
            let mut x = x0.clone(); // [3, H, W]
            let mut wanted = timesteps.iter().enumerate().peekable();
            for t in 0..=t_max {
                let eps = rng::randn(rng, shape.clone(), device)?;
                x = schedule.q_step(&x, t, &eps)?;
                if let Some(&(i, _)) = wanted.peek().filter(|(_, &w)| w == t) {
                    on_frame(i, &x)?;
                    wanted.next();
                }
                on_step(t + 1, t_max + 1);
            }
            let a = schedule.alphas_cumprod[t_max];
            // ε that reaches the last frame in closed form.
            Ok(((&x - x0.affine(a.sqrt(), 0.0)?)?.affine(1.0 / (1.0 - a).sqrt(), 0.0))?)
        }
    }
}
