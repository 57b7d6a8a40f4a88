//! Nearest-neighbour 2× upsampling `[B, C, H, W] → [B, C, 2H, 2W]`; its backward sums each
//! 2×2 block (candle's own backward runs a grouped conv, one group per channel).

use candle_core::{CpuStorage, CustomOp1, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

use super::{contiguous_f32, use_cpu_kernel};

struct Up2;

impl CustomOp1 for Up2 {
    fn name(&self) -> &'static str {
        "diffuse-upsample2x"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let (b, c, h, w) = l.shape().dims4()?;
        let x = contiguous_f32(s, l, "upsample")?;
        let mut y = super::zeros_par(b * c * 4 * h * w);
        y.par_chunks_mut(4 * h * w)
            .zip(x.par_chunks(h * w))
            .for_each(|(yp, xp)| {
                for iy in 0..h {
                    let src = &xp[iy * w..(iy + 1) * w];
                    let (r0, r1) = yp[2 * iy * 2 * w..(2 * iy + 2) * 2 * w].split_at_mut(2 * w);
                    for (ix, &v) in src.iter().enumerate() {
                        r0[2 * ix] = v;
                        r0[2 * ix + 1] = v;
                    }
                    r1.copy_from_slice(r0);
                }
            });
        Ok((CpuStorage::F32(y), Shape::from((b, c, 2 * h, 2 * w))))
    }

    fn bwd(&self, _x: &Tensor, _y: &Tensor, dy: &Tensor) -> Result<Option<Tensor>> {
        Ok(Some(dy.contiguous()?.apply_op1_no_bwd(&Down2Sum)?))
    }
}

/// Sum of each 2×2 block: the adjoint of [`Up2`].
struct Down2Sum;

impl CustomOp1 for Down2Sum {
    fn name(&self) -> &'static str {
        "diffuse-upsample2x-grad"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let (b, c, h2, w2) = l.shape().dims4()?;
        let (h, w) = (h2 / 2, w2 / 2);
        let dy = contiguous_f32(s, l, "upsample")?;
        let mut dx = super::zeros_par(b * c * h * w);
        dx.par_chunks_mut(h * w)
            .zip(dy.par_chunks(h2 * w2))
            .for_each(|(xp, yp)| {
                for iy in 0..h {
                    let r0 = &yp[2 * iy * w2..(2 * iy + 1) * w2];
                    let r1 = &yp[(2 * iy + 1) * w2..(2 * iy + 2) * w2];
                    for ix in 0..w {
                        xp[iy * w + ix] = r0[2 * ix] + r0[2 * ix + 1] + r1[2 * ix] + r1[2 * ix + 1];
                    }
                }
            });
        Ok((CpuStorage::F32(dx), Shape::from((b, c, h, w))))
    }
}

/// Nearest-neighbour upsampling by 2 in height and width.
pub fn upsample_nearest2x(x: &Tensor) -> Result<Tensor> {
    if use_cpu_kernel(&[x]) {
        return x.contiguous()?.apply_op1(Up2);
    }
    let (_, _, h, w) = x.dims4()?;
    x.upsample_nearest2d(2 * h, 2 * w)
}
