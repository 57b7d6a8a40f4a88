//! LayerNorm over the last dimension, `y = (x − μ)/√(σ² + ε)·γ + β`, as one fused CPU op with
//! a fused backward (input gradient, and γ/β gradients reduced in fixed row blocks so the
//! sums do not depend on the thread count). Other devices and dtypes use candle's ops.

use candle_core::{CpuStorage, CustomOp3, Layout, Result, Shape, Tensor, D};
use rayon::prelude::*;

use super::{contiguous_f32, use_cpu_kernel};

/// Rows per block of the γ/β gradient reduction.
const ROWS_PER_BLOCK: usize = 64;

/// LayerNorm of `xs` `[…, C]` with `gamma`, `beta` `[C]`.
pub fn layer_norm(xs: &Tensor, gamma: &Tensor, beta: &Tensor, eps: f64) -> Result<Tensor> {
    if use_cpu_kernel(&[xs, gamma, beta]) {
        let op = LayerNormFwd { eps: eps as f32 };
        return xs
            .contiguous()?
            .apply_op3(&gamma.contiguous()?, &beta.contiguous()?, op);
    }
    layer_norm_reference(xs, gamma, beta, eps)
}

/// The same as a composition of candle ops (autograd gives the backward pass).
pub fn layer_norm_reference(
    xs: &Tensor,
    gamma: &Tensor,
    beta: &Tensor,
    eps: f64,
) -> Result<Tensor> {
    let mean = xs.mean_keepdim(D::Minus1)?;
    let centred = xs.broadcast_sub(&mean)?;
    let var = centred.sqr()?.mean_keepdim(D::Minus1)?;
    let normed = centred.broadcast_div(&(var + eps)?.sqrt()?)?;
    normed.broadcast_mul(gamma)?.broadcast_add(beta)
}

/// (mean, 1/√(var + ε)) of one row, the variance about the mean.
fn row_stats(x: &[f32], eps: f32) -> (f32, f32) {
    let n = x.len() as f32;
    let mean = x.iter().sum::<f32>() / n;
    let var = x.iter().map(|v| (v - mean) * (v - mean)).sum::<f32>() / n;
    (mean, 1.0 / (var + eps).sqrt())
}

struct LayerNormFwd {
    eps: f32,
}

impl CustomOp3 for LayerNormFwd {
    fn name(&self) -> &'static str {
        "diffuse-layer-norm"
    }

    fn cpu_fwd(
        &self,
        xs: &CpuStorage,
        xl: &Layout,
        gs: &CpuStorage,
        gl: &Layout,
        bs: &CpuStorage,
        bl: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let x = contiguous_f32(xs, xl, "layer_norm input")?;
        let gamma = contiguous_f32(gs, gl, "layer_norm gamma")?;
        let beta = contiguous_f32(bs, bl, "layer_norm beta")?;
        let c = gamma.len();
        if c == 0 || xl.shape().dims().last() != Some(&c) || beta.len() != c {
            candle_core::bail!("layer_norm: {:?} does not end in {c} features", xl.shape());
        }
        let mut y = super::zeros_par(x.len());
        y.par_chunks_mut(c)
            .zip(x.par_chunks(c))
            .for_each(|(yr, xr)| {
                let (mean, rstd) = row_stats(xr, self.eps);
                for i in 0..c {
                    yr[i] = (xr[i] - mean) * rstd * gamma[i] + beta[i];
                }
            });
        Ok((CpuStorage::F32(y), xl.shape().clone()))
    }

    fn bwd(
        &self,
        x: &Tensor,
        gamma: &Tensor,
        _beta: &Tensor,
        _y: &Tensor,
        dy: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let c = gamma.dim(0)?;
        let n = x.elem_count();
        let op = LayerNormBwd { eps: self.eps };
        let g = x.apply_op3_no_bwd(gamma, &dy.contiguous()?, &op)?; // [n + 2C]
        Ok((
            Some(g.narrow(0, 0, n)?.reshape(x.shape())?),
            Some(g.narrow(0, n, c)?),
            Some(g.narrow(0, n + c, c)?),
        ))
    }
}

/// dx, dγ and dβ from x, γ and dy, packed flat as `[dx; dγ; dβ]`.
struct LayerNormBwd {
    eps: f32,
}

impl LayerNormBwd {
    /// One block of rows: writes dx and returns this block's (Σ dy·x̂, Σ dy) per feature.
    fn block(&self, x: &[f32], gamma: &[f32], dy: &[f32], dx: &mut [f32]) -> Vec<f64> {
        let c = gamma.len();
        let mut sums = vec![0f64; 2 * c];
        let mut xhat = vec![0f32; c];
        for ((xr, dyr), dxr) in x.chunks(c).zip(dy.chunks(c)).zip(dx.chunks_mut(c)) {
            let (mean, rstd) = row_stats(xr, self.eps);
            let (mut mean_g, mut mean_gx) = (0f32, 0f32);
            for i in 0..c {
                xhat[i] = (xr[i] - mean) * rstd;
                let g = dyr[i] * gamma[i];
                mean_g += g;
                mean_gx += g * xhat[i];
                sums[i] += (dyr[i] * xhat[i]) as f64;
                sums[c + i] += dyr[i] as f64;
            }
            let (mean_g, mean_gx) = (mean_g / c as f32, mean_gx / c as f32);
            for i in 0..c {
                dxr[i] = rstd * (dyr[i] * gamma[i] - mean_g - xhat[i] * mean_gx);
            }
        }
        sums
    }
}

impl CustomOp3 for LayerNormBwd {
    fn name(&self) -> &'static str {
        "diffuse-layer-norm-grad"
    }

    fn cpu_fwd(
        &self,
        xs: &CpuStorage,
        xl: &Layout,
        gs: &CpuStorage,
        gl: &Layout,
        ds: &CpuStorage,
        dl: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let x = contiguous_f32(xs, xl, "layer_norm input")?;
        let gamma = contiguous_f32(gs, gl, "layer_norm gamma")?;
        let dy = contiguous_f32(ds, dl, "layer_norm grad")?;
        let c = gamma.len();
        let n = x.len();
        let mut out = super::zeros_par(n + 2 * c);
        let (dx, dgb) = out.split_at_mut(n);
        let block = ROWS_PER_BLOCK * c;
        let partial: Vec<Vec<f64>> = dx
            .par_chunks_mut(block)
            .zip(x.par_chunks(block).zip(dy.par_chunks(block)))
            .map(|(dxb, (xb, dyb))| self.block(xb, gamma, dyb, dxb))
            .collect();
        for (i, v) in dgb.iter_mut().enumerate() {
            *v = partial.iter().map(|p| p[i]).sum::<f64>() as f32;
        }
        Ok((CpuStorage::F32(out), Shape::from(n + 2 * c)))
    }
}
