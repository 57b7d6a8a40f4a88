//! A latent as a picture: its channels side by side in a 2×2 grid (4 channels, as Stable
//! Diffusion's), each in false colour (blue below zero, white at zero, red above), so a frame
//! can show what a latent model really denoises next to what it decodes to.

use candle_core::Tensor;

use crate::error::{Error, Result};

/// The value shown at full colour: latents are scaled to unit variance, so ±2σ.
pub const LATENT_RANGE: f32 = 2.0;

/// Latents `[K, 4, h, w]` as pictures `[K, 3, side, side]` in [-1, 1]: channel c in cell
/// (c / 2, c % 2) of a 2×2 grid, each upscaled (nearest) to side / 2.
pub fn channel_grid(z: &Tensor, side: usize) -> Result<Tensor> {
    let (k, c, h, w) = z.dims4()?;
    if c != 4 || h != w || side % (2 * h) != 0 {
        return Err(Error::Unsupported(format!(
            "a 2×2 channel grid needs 4 square channels whose side divides {side} / 2 (got {c}×{h}×{w})"
        )));
    }
    let zoom = side / (2 * h);
    let v = z.flatten_all()?.to_vec1::<f32>()?;
    let mut out = vec![0f32; k * 3 * side * side];
    for i in 0..k {
        for y in 0..side {
            for x in 0..side {
                let (cell, zy, zx) = (
                    2 * (y / (side / 2)) + x / (side / 2),
                    (y % (side / 2)) / zoom,
                    (x % (side / 2)) / zoom,
                );
                let t = (v[((i * 4 + cell) * h + zy) * w + zx] / LATENT_RANGE).clamp(-1.0, 1.0);
                // [0, 1] colours: red above zero, blue below, white at zero.
                let rgb = match t >= 0.0 {
                    true => [1.0, 1.0 - t, 1.0 - t],
                    false => [1.0 + t, 1.0 + t, 1.0],
                };
                for (ch, value) in rgb.iter().enumerate() {
                    out[((i * 3 + ch) * side + y) * side + x] = 2.0 * value - 1.0;
                }
            }
        }
    }
    Ok(Tensor::from_vec(out, (k, 3, side, side), z.device())?)
}
