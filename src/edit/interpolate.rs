//! Walks through noise space and prompt space: spherical interpolation between two starting
//! noises (Gaussian noise lives near a sphere, so a straight line would pass through
//! low-norm, blurry starts) and linear interpolation between two encoded prompts.

use candle_core::Tensor;

use crate::error::Result;

/// The interpolation weights of `frames` frames: 0, 1/(n−1), …, 1.
pub fn weights(frames: usize) -> Vec<f64> {
    let last = frames.saturating_sub(1).max(1) as f64;
    (0..frames).map(|i| i as f64 / last).collect()
}

/// Spherical interpolation between `a` and `b` (same shape) at weight `w` ∈ [0, 1], over all
/// elements as one vector: sin((1−w)θ)/sin θ·a + sin(wθ)/sin θ·b with θ the angle between
/// them. Exact at the end points; linear when the two are (nearly) parallel.
pub fn slerp(a: &Tensor, b: &Tensor, w: f64) -> Result<Tensor> {
    if w == 0.0 {
        return Ok(a.clone());
    }
    if w == 1.0 {
        return Ok(b.clone());
    }
    let dot = |x: &Tensor, y: &Tensor| -> Result<f64> {
        let v = (x * y)?.sum_all()?.to_dtype(candle_core::DType::F64)?;
        Ok(v.to_scalar::<f64>()?)
    };
    let cos = dot(a, b)? / (dot(a, a)?.sqrt() * dot(b, b)?.sqrt()).max(f64::MIN_POSITIVE);
    let theta = cos.clamp(-1.0, 1.0).acos();
    if theta.sin().abs() < 1e-6 {
        return Ok((a.affine(1.0 - w, 0.0)? + b.affine(w, 0.0)?)?);
    }
    let (ca, cb) = (
        ((1.0 - w) * theta).sin() / theta.sin(),
        (w * theta).sin() / theta.sin(),
    );
    Ok((a.affine(ca, 0.0)? + b.affine(cb, 0.0)?)?)
}
