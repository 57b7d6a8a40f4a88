//! conv2d's backward pass: the input gradient as GEMM + col2im, the weight gradient as GEMM
//! over im2col, and the bias gradient as a channel sum (candle's own backward goes through a
//! naive `conv_transpose2d`).

use candle_core::{CpuStorage, CustomOp1, CustomOp2, Layout, Result, Shape};
use rayon::prelude::*;

use super::im2col::{col2im, im2col, per_sample, scratch, transpose, with_scratch, Geom};
use super::{contiguous_f32, sgemm, threads};

/// `dx_b = col2im(Wᵀ · dy_b)`.
pub(super) struct Conv2dGradInput {
    pub(super) stride: usize,
    pub(super) pad: usize,
    pub(super) h: usize,
    pub(super) w: usize,
}

impl CustomOp2 for Conv2dGradInput {
    fn name(&self) -> &'static str {
        "diffuse-conv2d-grad-input"
    }

    fn cpu_fwd(
        &self,
        dys: &CpuStorage,
        dyl: &Layout,
        ws: &CpuStorage,
        wl: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (cout, cin, k, _) = wl.shape().dims4()?;
        let (b, _, _, _) = dyl.shape().dims4()?;
        let xshape = Shape::from((b, cin, self.h, self.w));
        let g = Geom::new(&xshape, cout, k, self.stride, self.pad)?;
        let dy = contiguous_f32(dys, dyl, "conv2d grad")?;
        let w = contiguous_f32(ws, wl, "conv2d weight")?;
        let mut dx = super::zeros_par(b * g.x_len()); // zeroed once, for col2im's sums
        let one = |_: usize, dyb: &[f32], dxb: &mut [f32], col: &mut Vec<f32>, parallel: bool| {
            let pointwise = g.pointwise();
            let col = scratch(col, if pointwise { 0 } else { g.kdim() * g.pix() });
            let dst = if pointwise {
                dxb.as_mut_ptr()
            } else {
                col.as_mut_ptr()
            };
            // gcolᵀ [Ho·Wo, K] = dyᵀ [Ho·Wo, Cout] · W [Cout, K] (column-major dyᵀ and gcolᵀ).
            unsafe {
                sgemm(
                    (g.pix(), g.kdim(), g.cout),
                    dst,
                    (1, g.pix() as isize),
                    false,
                    dyb.as_ptr(),
                    (1, g.pix() as isize),
                    w.as_ptr(),
                    (g.kdim() as isize, 1),
                    parallel,
                )
            };
            if !pointwise {
                col2im(&g, col, dxb);
            }
        };
        per_sample(&g, dy, g.y_len(), &mut dx, g.x_len(), one);
        Ok((CpuStorage::F32(dx), xshape))
    }
}

/// `dW = Σ_b dy_b · im2col(x_b)ᵀ`, summed per thread and then across threads in a fixed
/// order, so the result is deterministic for a given thread count.
pub(super) struct Conv2dGradWeight {
    pub(super) stride: usize,
    pub(super) pad: usize,
    pub(super) k: usize,
}

impl CustomOp2 for Conv2dGradWeight {
    fn name(&self) -> &'static str {
        "diffuse-conv2d-grad-weight"
    }

    fn cpu_fwd(
        &self,
        xs: &CpuStorage,
        xl: &Layout,
        dys: &CpuStorage,
        dyl: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (_, cout, _, _) = dyl.shape().dims4()?;
        let g = Geom::new(xl.shape(), cout, self.k, self.stride, self.pad)?;
        let x = contiguous_f32(xs, xl, "conv2d input")?;
        let dy = contiguous_f32(dys, dyl, "conv2d grad")?;
        let wlen = g.cout * g.kdim();
        // Accumulates samples `range` into `dw`.
        let partial = |range: std::ops::Range<usize>, dw: &mut [f32], parallel: bool| {
            let mut dy_t = vec![0f32; g.pix() * g.cout];
            with_scratch(|col| {
                for (i, bi) in range.enumerate() {
                    let xb = &x[bi * g.x_len()..(bi + 1) * g.x_len()];
                    let dyb = &dy[bi * g.y_len()..(bi + 1) * g.y_len()];
                    let src: &[f32] = if g.pointwise() {
                        xb
                    } else {
                        let col = scratch(col, g.kdim() * g.pix());
                        im2col(&g, xb, col, parallel);
                        col
                    };
                    transpose(dyb, g.cout, g.pix(), &mut dy_t); // [Ho·Wo, Cout]
                                                                // dW [Cout, K] = dy [Cout, Ho·Wo] · colᵀ [Ho·Wo, K], stored [K][Cout] and with
                                                                // dy read from its transpose, so every operand is column-major.
                    unsafe {
                        sgemm(
                            (g.cout, g.kdim(), g.pix()),
                            dw.as_mut_ptr(),
                            (1, g.cout as isize),
                            i > 0,
                            dy_t.as_ptr(),
                            (1, g.cout as isize),
                            src.as_ptr(),
                            (1, g.pix() as isize),
                            parallel,
                        )
                    };
                }
            });
        };
        let mut dw_t = vec![0f32; wlen]; // [K][Cout]
        if g.batch_parallel() {
            let n = threads().min(g.b);
            let chunk = g.b.div_ceil(n);
            let mut parts = vec![0f32; n * wlen];
            parts
                .par_chunks_mut(wlen)
                .enumerate()
                .for_each(|(t, part)| {
                    let lo = (t * chunk).min(g.b);
                    let hi = ((t + 1) * chunk).min(g.b);
                    if lo < hi {
                        partial(lo..hi, part, false);
                    }
                });
            for part in parts.chunks(wlen) {
                for (a, b) in dw_t.iter_mut().zip(part) {
                    *a += b;
                }
            }
        } else {
            partial(0..g.b, &mut dw_t, true);
        }
        let mut dw = vec![0f32; wlen];
        transpose(&dw_t, g.kdim(), g.cout, &mut dw); // [Cout][K]
        Ok((CpuStorage::F32(dw), Shape::from((g.cout, g.cin, g.k, g.k))))
    }
}

/// `[B, C, ...] → [C]`: the sum over every axis but the channel one (the bias gradient).
pub(crate) struct ChannelSum;

impl CustomOp1 for ChannelSum {
    fn name(&self) -> &'static str {
        "diffuse-channel-sum"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let dims = l.shape().dims();
        let (b, c) = (dims[0], dims[1]);
        let inner: usize = dims[2..].iter().product();
        let x = contiguous_f32(s, l, "channel sum")?;
        // One channel per task; within a channel the samples are summed in order.
        let mut out = vec![0f32; c];
        out.par_iter_mut().enumerate().for_each(|(ci, o)| {
            for bi in 0..b {
                let start = (bi * c + ci) * inner;
                *o += x[start..start + inner].iter().sum::<f32>();
            }
        });
        Ok((CpuStorage::F32(out), Shape::from(c)))
    }
}
