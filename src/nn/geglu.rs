//! GEGLU, the gated GELU of Stable Diffusion's feed-forward: `[a, g]` (the two halves of the
//! last dimension) → `a ⊙ GELU(g)`, with the exact (erf) GELU, as one fused CPU op with a
//! fused backward. Other devices and dtypes use candle's ops.

use candle_core::cpu::erf::erf_f32;
use candle_core::{CpuStorage, CustomOp1, CustomOp2, Layout, Result, Shape, Tensor, D};
use rayon::prelude::*;

use super::{contiguous_f32, use_cpu_kernel};

/// `h` `[…, 2I]` → `a ⊙ GELU(g)` `[…, I]`, with `a`, `g` the first and second halves.
pub fn geglu(h: &Tensor) -> Result<Tensor> {
    if use_cpu_kernel(&[h]) {
        return h.contiguous()?.apply_op1(GegluFwd);
    }
    geglu_reference(h)
}

/// The same as candle ops.
pub fn geglu_reference(h: &Tensor) -> Result<Tensor> {
    let inner = h.dim(D::Minus1)? / 2;
    let a = h.narrow(D::Minus1, 0, inner)?;
    let g = h.narrow(D::Minus1, inner, inner)?;
    a * g.gelu_erf()?
}

/// GELU(g) = g·Φ(g) and its derivative Φ(g) + g·φ(g).
fn gelu_and_grad(g: f32) -> (f32, f32) {
    let cdf = 0.5 * (1.0 + erf_f32(g * std::f32::consts::FRAC_1_SQRT_2));
    let pdf = (-0.5 * g * g).exp() * 0.398_942_3; // 1/√(2π)
    (g * cdf, cdf + g * pdf)
}

/// The last dimension's width, which must be even.
fn halves(shape: &Shape) -> Result<usize> {
    match shape.dims().last() {
        Some(&w) if w % 2 == 0 && w > 0 => Ok(w / 2),
        _ => candle_core::bail!("geglu: {shape:?} does not end in an even width"),
    }
}

struct GegluFwd;

impl CustomOp1 for GegluFwd {
    fn name(&self) -> &'static str {
        "diffuse-geglu"
    }

    fn cpu_fwd(&self, hs: &CpuStorage, hl: &Layout) -> Result<(CpuStorage, Shape)> {
        let h = contiguous_f32(hs, hl, "geglu input")?;
        let i = halves(hl.shape())?;
        let mut y = super::zeros_par(h.len() / 2);
        y.par_chunks_mut(i)
            .zip(h.par_chunks(2 * i))
            .for_each(|(yr, hr)| {
                let (a, g) = hr.split_at(i);
                for j in 0..i {
                    yr[j] = a[j] * gelu_and_grad(g[j]).0;
                }
            });
        let mut dims = hl.shape().dims().to_vec();
        if let Some(last) = dims.last_mut() {
            *last = i;
        }
        Ok((CpuStorage::F32(y), Shape::from(dims)))
    }

    fn bwd(&self, h: &Tensor, _y: &Tensor, dy: &Tensor) -> Result<Option<Tensor>> {
        Ok(Some(h.apply_op2_no_bwd(&dy.contiguous()?, &GegluBwd)?))
    }
}

/// dh = [dy ⊙ GELU(g), dy ⊙ a ⊙ GELU'(g)] from h = [a, g] `[…, 2I]` and dy `[…, I]`.
struct GegluBwd;

impl CustomOp2 for GegluBwd {
    fn name(&self) -> &'static str {
        "diffuse-geglu-grad"
    }

    fn cpu_fwd(
        &self,
        hs: &CpuStorage,
        hl: &Layout,
        dys: &CpuStorage,
        dyl: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let h = contiguous_f32(hs, hl, "geglu grad input")?;
        let dy = contiguous_f32(dys, dyl, "geglu grad")?;
        let i = halves(hl.shape())?;
        if dy.len() * 2 != h.len() {
            candle_core::bail!("geglu grad: dy {:?} for h {:?}", dyl.shape(), hl.shape());
        }
        let mut dh = super::zeros_par(h.len());
        dh.par_chunks_mut(2 * i)
            .zip(h.par_chunks(2 * i).zip(dy.par_chunks(i)))
            .for_each(|(dr, (hr, dy))| {
                let (a, g) = hr.split_at(i);
                let (da, dg) = dr.split_at_mut(i);
                for j in 0..i {
                    let (gelu, grad) = gelu_and_grad(g[j]);
                    da[j] = dy[j] * gelu;
                    dg[j] = dy[j] * a[j] * grad;
                }
            });
        Ok((CpuStorage::F32(dh), hl.shape().clone()))
    }
}
