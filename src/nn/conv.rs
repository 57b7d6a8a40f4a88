//! conv2d `[B, Cin, H, W] ⊛ [Cout, Cin, k, k] + bias → [B, Cout, Ho, Wo]` as im2col + GEMM,
//! with a backward pass that is GEMM + col2im too ([`super::conv_grad`]).
//!
//! Work is split over the batch when it has at least as many samples as threads, and inside
//! each GEMM otherwise; per-thread scratch buffers are reused across samples. (Stacking a
//! batch's small feature maps into one GEMM was tried and measured no faster: 2,244 against
//! 2,234 ms for the emoji training step, 349 against 354 ms for its batch-16 forward, medians
//! of three alternating runs' minima, and it changed the rounding.)

use candle_core::{CpuStorage, CustomOp3, Layout, Result, Shape, Tensor};

use super::conv_grad::{ChannelSum, Conv2dGradInput, Conv2dGradWeight};
use super::im2col::{im2col, per_sample, scratch, Geom};
use super::{contiguous_f32, cpu_f32, sgemm, use_cpu_kernel};

/// Forward: `y_b = W · im2col(x_b) + bias`, then `+ addend_b` when there is one.
struct Conv2dFwd {
    stride: usize,
    pad: usize,
    /// Added after the GEMM, inference only: `[B, Cout]` (a per-sample bias, such as a time
    /// embedding) or `[B, Cout, Ho, Wo]` (a residual). Adding it here saves a pass over the
    /// output and a fresh tensor; the sums are the same as adding it afterwards.
    addend: Option<Tensor>,
}

/// The addend's data, checked against the output: (values, true when one per channel).
fn addend_data<'a>(a: &'a [f32], g: &Geom) -> Result<(&'a [f32], bool)> {
    match a.len() {
        n if n == g.b * g.cout => Ok((a, true)),
        n if n == g.b * g.y_len() => Ok((a, false)),
        n => candle_core::bail!(
            "conv2d addend: {n} values for a {}x{}x{}x{} output",
            g.b,
            g.cout,
            g.ho,
            g.wo
        ),
    }
}

/// Adds sample `i`'s addend to its output `yb` `[Cout, Ho·Wo]`.
fn add_addend(yb: &mut [f32], addend: Option<(&[f32], bool)>, i: usize, g: &Geom) {
    match addend {
        None => {}
        Some((a, true)) => {
            let a = &a[i * g.cout..(i + 1) * g.cout];
            for (row, &v) in yb.chunks_mut(g.pix()).zip(a) {
                row.iter_mut().for_each(|y| *y += v);
            }
        }
        Some((a, false)) => {
            let a = &a[i * g.y_len()..(i + 1) * g.y_len()];
            yb.iter_mut().zip(a).for_each(|(y, v)| *y += v);
        }
    }
}

/// `Cout` rows of `len` values, each its channel's bias, repeated `times` times.
fn bias_rows(bias: &[f32], len: usize, times: usize) -> Vec<f32> {
    // Row by row on rayon's threads: written by one thread, this took 2 % of a training step.
    super::filled_par(times * bias.len() * len, len, |i| bias[i % bias.len()])
}

/// The per-sample path: im2col and one GEMM per sample, computed transposed, yᵀ [Ho·Wo, Cout]
/// = colᵀ [Ho·Wo, K] · Wᵀ [K, Cout], so that every operand is column-major and GEMM packs
/// nothing big.
fn forward_per_sample(
    g: &Geom,
    x: &[f32],
    w: &[f32],
    bias: &[f32],
    addend: Option<(&[f32], bool)>,
) -> Vec<f32> {
    // Starts as the bias, written once (no zeroing first); the GEMM accumulates onto it.
    let mut y = bias_rows(&bias[..g.cout], g.pix(), g.b);
    let one = |i: usize, xb: &[f32], yb: &mut [f32], col: &mut Vec<f32>, parallel: bool| {
        let src: &[f32] = if g.pointwise() {
            xb
        } else {
            let col = scratch(col, g.kdim() * g.pix());
            im2col(g, xb, col, parallel);
            col
        };
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
        add_addend(yb, addend, i, g);
    };
    per_sample(g, x, g.x_len(), &mut y, g.y_len(), one);
    y
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
        let guard = self.addend.as_ref().map(|t| t.storage_and_layout());
        let addend = match &guard {
            Some((s, l)) => Some(addend_data(cpu_f32(s, l, "conv2d addend")?, &g)?),
            None => None,
        };
        let y = forward_per_sample(&g, x, w, bias, addend);
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
        let (dx, dw, db) = conv_grads(x, w, &dy.contiguous()?, self.stride, self.pad)?;
        Ok((Some(dx), Some(dw), Some(db)))
    }
}

/// `(∂L/∂x, ∂L/∂W, ∂L/∂bias)` of a convolution from the output's gradient `dy`.
fn conv_grads(
    x: &Tensor,
    w: &Tensor,
    dy: &Tensor,
    stride: usize,
    pad: usize,
) -> Result<(Tensor, Tensor, Tensor)> {
    let (_, _, h, wd) = x.dims4()?;
    let dx = dy.apply_op2_no_bwd(
        w,
        &Conv2dGradInput {
            stride,
            pad,
            h,
            w: wd,
        },
    )?;
    let (_, _, k, _) = w.dims4()?;
    let dw = x.apply_op2_no_bwd(dy, &Conv2dGradWeight { stride, pad, k })?;
    let db = dy.apply_op1_no_bwd(&ChannelSum)?;
    Ok((dx, dw, db))
}

/// Training's conv2d + addend: inputs `x`, `wb` = W and bias flattened into one vector
/// (a custom op takes at most three inputs), and the addend. The forward is
/// [`Conv2dFwd`]'s with the addend; the backward hands the addend its gradient directly:
/// `dy` itself for a residual, its per-sample channel sums for a `[B, Cout]` addend.
///
/// A residual is the op's first input and `x` its second, a per-channel addend its third:
/// the order in which the callers' former `skip + conv(h)` and `conv(h) + t` reached them,
/// so candle's backward visits the graph in the same order and sums every gradient with
/// several contributions in the same order, and training rounds exactly as before.
struct Conv2dAddFwd {
    stride: usize,
    pad: usize,
    /// W's shape `[Cout, Cin, k, k]`.
    w_dims: (usize, usize, usize, usize),
    residual: bool,
}

impl Conv2dAddFwd {
    /// The op's three inputs as (x, wb, addend).
    fn order<T>(&self, [a, b, c]: [T; 3]) -> (T, T, T) {
        match self.residual {
            true => (b, c, a),
            false => (a, b, c),
        }
    }

    /// (dx, dwb, daddend) as the op's inputs are ordered.
    fn reorder<T>(&self, (dx, dwb, da): (T, T, T)) -> (T, T, T) {
        match self.residual {
            true => (da, dx, dwb),
            false => (dx, dwb, da),
        }
    }
}

impl CustomOp3 for Conv2dAddFwd {
    fn name(&self) -> &'static str {
        "diffuse-conv2d-add"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let ((xs, xl), (wbs, wbl), (addend_s, addend_l)) =
            self.order([(s1, l1), (s2, l2), (s3, l3)]);
        let (cout, cin, k, _) = self.w_dims;
        let g = Geom::new(xl.shape(), cout, k, self.stride, self.pad)?;
        if g.cin != cin {
            candle_core::bail!("conv2d: {} input channels for a weight of {cin}", g.cin);
        }
        let x = contiguous_f32(xs, xl, "conv2d input")?;
        let wb = contiguous_f32(wbs, wbl, "conv2d weight")?;
        if wb.len() != cout * g.kdim() + cout {
            candle_core::bail!(
                "conv2d: {} weights and biases for {:?}",
                wb.len(),
                self.w_dims
            );
        }
        let (w, bias) = wb.split_at(cout * g.kdim());
        let addend = addend_data(contiguous_f32(addend_s, addend_l, "conv2d addend")?, &g)?;
        let y = forward_per_sample(&g, x, w, bias, Some(addend));
        Ok((CpuStorage::F32(y), Shape::from((g.b, g.cout, g.ho, g.wo))))
    }

    fn bwd(
        &self,
        t1: &Tensor,
        t2: &Tensor,
        t3: &Tensor,
        _y: &Tensor,
        dy: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let (x, wb, addend) = self.order([t1, t2, t3]);
        let dy = dy.contiguous()?;
        let (cout, cin, k, _) = self.w_dims;
        let w = wb.narrow(0, 0, cout * cin * k * k)?.reshape(self.w_dims)?;
        let (dx, dw, db) = conv_grads(x, &w, &dy, self.stride, self.pad)?;
        let dwb = Tensor::cat(&[&dw.flatten_all()?, &db], 0)?;
        // The sums candle's broadcast backward takes, for the same bits.
        let daddend = match self.residual {
            false => dy.sum_keepdim((2, 3))?.reshape(addend.shape())?,
            true => dy,
        };
        let (g1, g2, g3) = self.reorder((dx, dwb, daddend));
        Ok((Some(g1), Some(g2), Some(g3)))
    }
}

/// The bias, or zeros `[Cout]` for a convolution without one.
fn bias_or_zeros(bias: Option<&Tensor>, w: &Tensor) -> Result<Tensor> {
    match bias {
        Some(b) => b.contiguous(),
        None => Tensor::zeros(w.dim(0)?, w.dtype(), w.device()),
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
        let bias = bias_or_zeros(bias, w)?;
        return x.contiguous()?.apply_op3(
            &w.contiguous()?,
            &bias,
            Conv2dFwd {
                stride,
                pad: padding,
                addend: None,
            },
        );
    }
    conv2d_reference(x, w, bias, stride, padding)
}

/// [`conv2d`] + `addend`, where `addend` is `[B, Cout]` (one value per sample and channel,
/// such as a time embedding) or `[B, Cout, Ho, Wo]` (a residual).
///
/// On the CPU the addition happens inside the convolution, right after each sample's GEMM:
/// while sampling in `Conv2dFwd`, with gradients in `Conv2dAddFwd`, which also hands the
/// addend its gradient. Elsewhere it is candle's broadcast add. Either way each output is
/// `(W·x + bias) + addend`, rounded the same, and the gradients are bit for bit candle's.
pub fn conv2d_add(
    x: &Tensor,
    w: &Tensor,
    bias: Option<&Tensor>,
    stride: usize,
    padding: usize,
    addend: &Tensor,
) -> Result<Tensor> {
    let grads = x.track_op() || w.track_op() || addend.track_op();
    let bias_ok = bias.is_none_or(|b| use_cpu_kernel(&[b]) && !b.track_op());
    if !grads && bias_ok && use_cpu_kernel(&[x, w, addend]) {
        let bias = bias_or_zeros(bias, w)?;
        return x.contiguous()?.apply_op3_no_bwd(
            &w.contiguous()?,
            &bias,
            &Conv2dFwd {
                stride,
                pad: padding,
                addend: Some(addend.contiguous()?),
            },
        );
    }
    if bias.is_none_or(|b| use_cpu_kernel(&[b])) && use_cpu_kernel(&[x, w, addend]) {
        // With gradients: W and the bias travel as one input (a cheap copy of the weights),
        // so the addend can be the third.
        let (bias, w) = (bias_or_zeros(bias, w)?, w.contiguous()?);
        let wb = Tensor::cat(&[&w.flatten_all()?, &bias], 0)?; // [Cout·Cin·k·k + Cout]
        let (x, addend) = (x.contiguous()?, addend.contiguous()?);
        let op = Conv2dAddFwd {
            stride,
            pad: padding,
            w_dims: w.dims4()?,
            residual: addend.rank() == 4,
        };
        return match op.residual {
            true => addend.apply_op3(&x, &wb, op),
            false => x.apply_op3(&wb, &addend, op),
        };
    }
    // Off the CPU: candle's ops, in the operand order of the callers' former `h + t` and
    // `skip + h` (the same values, and the same order of gradient sums in backward).
    let y = conv2d(x, w, bias, stride, padding)?;
    match addend.rank() {
        2 => y.broadcast_add(&addend.unsqueeze(2)?.unsqueeze(3)?),
        _ => addend.broadcast_add(&y),
    }
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
