//! conv2d `[B, Cin, H, W] ⊛ [Cout, Cin, k, k] + bias → [B, Cout, Ho, Wo]` as im2col + GEMM,
//! with a backward pass that is GEMM + col2im too (candle's own backward goes through a naive
//! `conv_transpose2d`).
//!
//! Work is split over the batch when it has at least as many samples as threads, and inside
//! each GEMM otherwise; per-thread scratch buffers are reused across samples.

use candle_core::{CpuStorage, CustomOp1, CustomOp2, CustomOp3, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

use super::im2col::{col2im, im2col, per_sample, scratch, transpose, with_scratch, Geom};
use super::{contiguous_f32, sgemm, threads, use_cpu_kernel};

/// Forward: `y_b = W · im2col(x_b) + bias`.
struct Conv2dFwd {
    stride: usize,
    pad: usize,
}

impl CustomOp3 for Conv2dFwd {
    fn name(&self) -> &'static str {
        "diffuse-conv2d"
    }

    fn cpu_fwd(
        &self,
        xs: &CpuStorage,
        xl: &Layout,
        ws: &CpuStorage,
        wl: &Layout,
        bs: &CpuStorage,
        bl: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (cout, _, k, _) = wl.shape().dims4()?;
        let g = Geom::new(xl.shape(), cout, k, self.stride, self.pad)?;
        let x = contiguous_f32(xs, xl, "conv2d input")?;
        let w = contiguous_f32(ws, wl, "conv2d weight")?;
        let bias = contiguous_f32(bs, bl, "conv2d bias")?;
        // Starts as the bias, written once (no zeroing first); the GEMM accumulates onto it.
        let mut y = Vec::with_capacity(g.b * g.y_len());
        for _ in 0..g.b {
            for &bc in &bias[..g.cout] {
                y.extend(std::iter::repeat_n(bc, g.pix()));
            }
        }
        let one = |xb: &[f32], yb: &mut [f32], col: &mut Vec<f32>, parallel: bool| {
            let src: &[f32] = if g.pointwise() {
                xb
            } else {
                let col = scratch(col, g.kdim() * g.pix());
                im2col(&g, xb, col, parallel);
                col
            };
            // Computed transposed, yᵀ [Ho·Wo, Cout] = colᵀ [Ho·Wo, K] · Wᵀ [K, Cout], so that
            // every operand is column-major and GEMM packs nothing big.
            unsafe {
                sgemm(
                    (g.pix(), g.cout, g.kdim()),
                    yb.as_mut_ptr(),
                    (1, g.pix() as isize),
                    true,
                    src.as_ptr(),
                    (1, g.pix() as isize),
                    w.as_ptr(),
                    (1, g.kdim() as isize),
                    parallel,
                )
            };
        };
        per_sample(&g, x, g.x_len(), &mut y, g.y_len(), one);
        Ok((CpuStorage::F32(y), Shape::from((g.b, g.cout, g.ho, g.wo))))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        _bias: &Tensor,
        _y: &Tensor,
        dy: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let dy = dy.contiguous()?;
        let (_, _, h, wd) = x.dims4()?;
        let dx = dy.apply_op2_no_bwd(
            w,
            &Conv2dGradInput {
                stride: self.stride,
                pad: self.pad,
                h,
                w: wd,
            },
        )?;
        let (_, _, k, _) = w.dims4()?;
        let dw = x.apply_op2_no_bwd(
            &dy,
            &Conv2dGradWeight {
                stride: self.stride,
                pad: self.pad,
                k,
            },
        )?;
        let db = dy.apply_op1_no_bwd(&ChannelSum)?;
        Ok((Some(dx), Some(dw), Some(db)))
    }
}

/// `dx_b = col2im(Wᵀ · dy_b)`.
struct Conv2dGradInput {
    stride: usize,
    pad: usize,
    h: usize,
    w: usize,
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
        let mut dx = vec![0f32; b * g.x_len()];
        let one = |dyb: &[f32], dxb: &mut [f32], col: &mut Vec<f32>, parallel: bool| {
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
struct Conv2dGradWeight {
    stride: usize,
    pad: usize,
    k: usize,
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
        let mut out = vec![0f32; c];
        for bi in 0..b {
            for (ci, o) in out.iter_mut().enumerate() {
                let start = (bi * c + ci) * inner;
                *o += x[start..start + inner].iter().sum::<f32>();
            }
        }
        Ok((CpuStorage::F32(out), Shape::from(c)))
    }
}

/// 2D convolution with a square kernel, `stride` and zero `padding` on every side.
///
/// `x` `[B, Cin, H, W]`, `w` `[Cout, Cin, k, k]`, `bias` `[Cout]` → `[B, Cout, Ho, Wo]`.
pub fn conv2d(
    x: &Tensor,
    w: &Tensor,
    bias: Option<&Tensor>,
    stride: usize,
    padding: usize,
) -> Result<Tensor> {
    if use_cpu_kernel(&[x, w]) && bias.is_none_or(|b| use_cpu_kernel(&[b])) {
        let zeros;
        let bias = match bias {
            Some(b) => b,
            None => {
                zeros = Tensor::zeros(w.dim(0)?, w.dtype(), w.device())?;
                &zeros
            }
        };
        return x.contiguous()?.apply_op3(
            &w.contiguous()?,
            &bias.contiguous()?,
            Conv2dFwd {
                stride,
                pad: padding,
            },
        );
    }
    conv2d_reference(x, w, bias, stride, padding)
}

/// candle's own conv2d (+ bias): the fallback on GPUs and the reference in tests.
pub fn conv2d_reference(
    x: &Tensor,
    w: &Tensor,
    bias: Option<&Tensor>,
    stride: usize,
    padding: usize,
) -> Result<Tensor> {
    let y = x.conv2d(w, padding, stride, 1, 1)?;
    match bias {
        Some(b) => y.broadcast_add(&b.reshape((1, b.dim(0)?, 1, 1))?),
        None => Ok(y),
    }
}
