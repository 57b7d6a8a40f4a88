//! Seeded Gaussian noise: drawn on the host from a ChaCha RNG and uploaded, so a seed
//! gives the same numbers on every device and every run (candle's CPU RNG cannot be seeded).

use candle_core::{Device, Shape, Tensor};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal};

use crate::error::Result;

/// The project's seeded random generator (portable across platforms, unlike `StdRng`).
pub type Rng = ChaCha8Rng;

/// A generator seeded with `seed`.
pub fn rng(seed: u64) -> Rng {
    ChaCha8Rng::seed_from_u64(seed)
}

/// A fresh seed for a run that was given none, from the OS's entropy; 53 bits, so it
/// survives a round trip through JSON numbers (the playground's JavaScript).
pub fn random_seed() -> u64 {
    rand::random::<u64>() >> 11
}

/// A tensor of `shape` filled with standard normal f32 samples from `rng`, placed on `device`.
pub fn randn(rng: &mut Rng, shape: impl Into<Shape>, device: &Device) -> Result<Tensor> {
    let shape = shape.into();
    let data: Vec<f32> = (0..shape.elem_count())
        .map(|_| StandardNormal.sample(rng))
        .collect();
    Ok(Tensor::from_vec(data, shape, device)?)
}
