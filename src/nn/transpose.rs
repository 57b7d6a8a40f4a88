//! `x.transpose(1, 2).contiguous()` for `[A, B, C, D]` → `[A, C, B, D]`: the attention heads
//! split and merged, and a feature map turned into a sequence of pixels and back. candle copies
//! a strided tensor on one thread; this op copies on rayon's threads, and its backward is the
//! same swap. Off the CPU, candle's ops.

use candle_core::{CpuStorage, CustomOp1, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

use super::{contiguous_f32, use_cpu_kernel};

/// `[A, B, C, D]` → `[A, C, B, D]`, contiguous.
pub fn transpose12(x: &Tensor) -> Result<Tensor> {
    if use_cpu_kernel(&[x]) {
        return x.contiguous()?.apply_op1(Transpose12);
    }
    x.transpose(1, 2)?.contiguous()
}

struct Transpose12;

impl CustomOp1 for Transpose12 {
    fn name(&self) -> &'static str {
        "diffuse-transpose12"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let (a, b, c, d) = l.shape().dims4()?;
        let x = contiguous_f32(s, l, "transpose12")?;
        // Output row (ai, ci) is [B, D]: row bi of it is x[ai, bi, ci, :].
        let row = b * d;
        let mut y = super::zeros_par(a * c * row);
        if row > 0 {
            y.par_chunks_mut(row).enumerate().for_each(|(r, out)| {
                let (ai, ci) = (r / c, r % c);
                for (bi, o) in out.chunks_mut(d.max(1)).enumerate() {
                    let from = ((ai * b + bi) * c + ci) * d;
                    o.copy_from_slice(&x[from..from + d]);
                }
            });
        }
        Ok((CpuStorage::F32(y), Shape::from((a, c, b, d))))
    }

    fn bwd(&self, _x: &Tensor, _y: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        Ok(Some(grad.contiguous()?.apply_op1_no_bwd(&Transpose12)?))
    }
}
