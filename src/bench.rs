//! Benchmark workloads shared by `benches/` (criterion) and, later, `diffuse bench`, so both
//! measure the same code. Each case is built once and then run repeatedly.

use candle_core::{Device, Tensor};
use image::RgbImage;
use rayon::prelude::*;

use crate::error::Result;
use crate::forward;
use crate::frames;
use crate::rng;
use crate::schedule::{NoiseSchedule, ScheduleConfig};

/// Forward noising of a batch: `q_sample` on `[batch, 3, h, w]` with random timesteps.
pub struct QSampleCase {
    pub schedule: NoiseSchedule,
    pub x0: Tensor,
    pub noise: Tensor,
    pub timesteps: Vec<usize>,
}

impl QSampleCase {
    pub fn new(batch: usize, h: usize, w: usize, device: &Device) -> Result<Self> {
        let schedule = NoiseSchedule::new(ScheduleConfig::default())?;
        let mut r = rng::rng(0);
        let x0 = rng::randn(&mut r, (batch, 3, h, w), device)?;
        let noise = rng::randn(&mut r, (batch, 3, h, w), device)?;
        let timesteps = (0..batch).map(|i| (i * 997) % schedule.len()).collect();
        Ok(Self {
            schedule,
            x0,
            noise,
            timesteps,
        })
    }

    /// Images in one run.
    pub fn images(&self) -> usize {
        self.timesteps.len()
    }

    pub fn run(&self) -> Result<Tensor> {
        self.schedule
            .q_sample(&self.x0, &self.timesteps, &self.noise)
    }
}

/// Frame output: `n` noisy RGB frames of `h`×`w`, encoded to PNG and GIF in memory.
pub struct FrameCase {
    pub frames: Vec<RgbImage>,
}

impl FrameCase {
    pub fn new(n: usize, h: usize, w: usize) -> Result<Self> {
        let schedule = NoiseSchedule::new(ScheduleConfig::default())?;
        let mut r = rng::rng(1);
        let x0 = rng::randn(&mut r, (1, 3, h, w), &Device::Cpu)?.clamp(-1f32, 1f32)?;
        let noise = rng::randn(&mut r, (1, 3, h, w), &Device::Cpu)?;
        let frames = forward::evenly_spaced_timesteps(n, schedule.len())?
            .into_iter()
            .map(|t| frames::to_rgb8(&schedule.q_sample(&x0, &[t], &noise)?.squeeze(0)?))
            .collect::<Result<Vec<_>>>()?;
        Ok(Self { frames })
    }

    /// All frames to PNG bytes, in parallel on rayon's pool. Returns the total bytes.
    pub fn encode_png(&self) -> Result<usize> {
        let sizes = self
            .frames
            .par_iter()
            .map(|f| frames::png_bytes(f).map(|b| b.len()))
            .collect::<Result<Vec<_>>>()?;
        Ok(sizes.iter().sum())
    }

    /// All frames to one looping GIF. Returns its size in bytes.
    pub fn encode_gif(&self) -> Result<usize> {
        Ok(frames::gif_bytes(&self.frames, 12.0)?.len())
    }
}
