//! `y = x·Wᵀ + b (+ residual)` while sampling: one GEMM over every row of `x`, then one
//! parallel pass that adds the bias and the residual, in place of candle's matmul and its
//! broadcast adds (each a pass over the output and a fresh tensor). With gradients it is
//! candle's matmul, then `BiasAdd` (whose backward is one column sum) and candle's add of
//! the residual; off the CPU, candle's composition. All of them round the same.

use candle_core::{CpuStorage, CustomOp1, CustomOp2, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

use super::{contiguous_f32, cpu_f32, sgemm, use_cpu_kernel};

/// `lin(x) + residual` for `x` `[…, K]` and `residual` shaped like the output `[…, N]`.
pub fn linear_add(
    lin: &candle_nn::Linear,
    x: &Tensor,
    residual: Option<&Tensor>,
) -> Result<Tensor> {
    let (w, bias) = (lin.weight(), lin.bias());
    let mut ts = vec![x, w];
    ts.extend(bias);
    ts.extend(residual);
    if !use_cpu_kernel(&ts) || ts.iter().any(|t| t.track_op()) || x.rank() < 2 {
        let y = match (bias, use_cpu_kernel(&ts)) {
            // Training on the CPU: candle's matmul, then the bias by [`BiasAdd`].
            (Some(b), true) => {
                let unbiased = candle_nn::Linear::new(w.clone(), None);
                candle_core::Module::forward(&unbiased, x)?.apply_op2(b, BiasAdd)?
            }
            _ => candle_core::Module::forward(lin, x)?,
        };
        return match residual {
            Some(r) => r + y,
            None => Ok(y),
        };
    }
    let (n, k) = w.dims2()?;
    let mut shape = x.dims().to_vec();
    if shape.last() != Some(&k) {
        candle_core::bail!("linear: input {:?} does not end in {k}", x.dims());
    }
    let rank = shape.len();
    shape[rank - 1] = n; // rank ≥ 2 here
    let m = x.elem_count() / k.max(1);
    let (x, w) = (x.contiguous()?, w.contiguous()?);
    let bias = bias.map(Tensor::contiguous).transpose()?;
    let residual = residual.map(Tensor::contiguous).transpose()?;
    if let Some(r) = &residual {
        if r.elem_count() != m * n {
            candle_core::bail!("linear: residual {:?} for an output of {m}x{n}", r.dims());
        }
    }
    let mut y = super::zeros_par(m * n); // [M, N]
    let guards = [Some(&x), Some(&w), bias.as_ref(), residual.as_ref()]
        .map(|t| t.map(Tensor::storage_and_layout));
    let data = |i: usize, what: &str| -> Result<Option<&[f32]>> {
        guards[i]
            .as_ref()
            .map(|(s, l)| cpu_f32(s, l, what))
            .transpose()
    };
    let (xd, wd) = (data(0, "linear input")?, data(1, "linear weight")?);
    let (b, r) = (data(2, "linear bias")?, data(3, "linear residual")?);
    let (Some(xd), Some(wd)) = (xd, wd) else {
        candle_core::bail!("linear: missing input")
    };
    // y [M, N] = x [M, K] · Wᵀ [K, N], W stored [N, K].
    unsafe {
        sgemm(
            (m, n, k),
            y.as_mut_ptr(),
            (n as isize, 1),
            false,
            xd.as_ptr(),
            (k as isize, 1),
            wd.as_ptr(),
            (1, k as isize),
            true,
        )
    };
    if b.is_some() || r.is_some() {
        y.par_chunks_mut(n).enumerate().for_each(|(i, row)| {
            if let Some(b) = b {
                row.iter_mut().zip(b).for_each(|(y, b)| *y += b);
            }
            if let Some(r) = r {
                row.iter_mut().zip(&r[i * n..]).for_each(|(y, r)| *y += r);
            }
        });
    }
    Tensor::from_vec(y, shape, x.device())
}

/// `y + bias` over the last dimension, as candle's `broadcast_add` computes it, with a
/// backward pass that sums `dy` down its rows in one vectorised pass. candle's backward of
/// the broadcast reduces over the leading dimensions element by element, with a division
/// per element, which took 4 % of an emoji training step. The sums run in the same order,
/// so the gradient is bit for bit candle's.
struct BiasAdd;

impl CustomOp2 for BiasAdd {
    fn name(&self) -> &'static str {
        "diffuse-bias-add"
    }

    fn cpu_fwd(
        &self,
        ys: &CpuStorage,
        yl: &Layout,
        bs: &CpuStorage,
        bl: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let y = contiguous_f32(ys, yl, "linear output")?;
        let b = contiguous_f32(bs, bl, "linear bias")?;
        if yl.dims().last() != Some(&b.len()) {
            candle_core::bail!("linear: bias of {} for an output {:?}", b.len(), yl.dims());
        }
        let mut out = y.to_vec();
        out.par_chunks_mut(b.len().max(1))
            .for_each(|row| row.iter_mut().zip(b).for_each(|(o, b)| *o += b));
        Ok((CpuStorage::F32(out), yl.shape().clone()))
    }

    fn bwd(
        &self,
        _y: &Tensor,
        _b: &Tensor,
        _out: &Tensor,
        dy: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let db = dy.contiguous()?.apply_op1_no_bwd(&ColumnSum)?;
        Ok((Some(dy.clone()), Some(db)))
    }
}

/// `[…, N]` → `[N]`: each column summed over the rows, in row order from zero.
struct ColumnSum;

impl CustomOp1 for ColumnSum {
    fn name(&self) -> &'static str {
        "diffuse-column-sum"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let x = contiguous_f32(s, l, "column sum")?;
        let n = l.dims().last().copied().unwrap_or(1);
        // Blocks of columns on rayon's threads; each column still sums its rows in order.
        const BLOCK: usize = 64;
        let mut acc = vec![0f32; n];
        acc.par_chunks_mut(BLOCK)
            .enumerate()
            .for_each(|(j, block)| {
                for row in x.chunks_exact(n.max(1)) {
                    let row = &row[j * BLOCK..][..block.len()];
                    block.iter_mut().zip(row).for_each(|(a, v)| *a += v);
                }
            });
        Ok((CpuStorage::F32(acc), Shape::from(n)))
    }
}
