//! Softmax over the last dimension with a backward pass.
//!
//! candle-nn's `softmax_last_dim` is a fast fused kernel but has no backward pass, so
//! autograd stops at it: a network trained through it never updates what feeds the
//! attention logits (the shapes UNet's query and key projections stayed at their initial
//! values for that reason). This op runs the very same kernel forward, so outputs are
//! bit-for-bit candle's, and adds the backward `dx = y ⊙ (dy − Σ dy·y)`.

use candle_core::{CpuStorage, CustomOp1, Layout, Result, Shape, Tensor, D};

/// `softmax(xs)` over the last dimension, differentiable.
pub fn softmax_last_dim(xs: &Tensor) -> Result<Tensor> {
    match xs.device() {
        candle_core::Device::Cpu => xs.contiguous()?.apply_op1(Softmax),
        _ => candle_nn::ops::softmax(xs, D::Minus1),
    }
}

struct Softmax;

impl CustomOp1 for Softmax {
    fn name(&self) -> &'static str {
        "diffuse-softmax"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        // candle's own kernel on a tensor over the same data (no autograd inside an op).
        let Some((a, b)) = l.contiguous_offsets() else {
            candle_core::bail!("softmax: expected a contiguous tensor")
        };
        let cpu = &candle_core::Device::Cpu;
        let xs = match s {
            CpuStorage::F32(v) => Tensor::from_slice(&v[a..b], l.shape(), cpu)?,
            CpuStorage::F64(v) => Tensor::from_slice(&v[a..b], l.shape(), cpu)?,
            _ => candle_core::bail!("softmax: f32 or f64 only"),
        };
        let y = candle_nn::ops::softmax_last_dim(&xs)?;
        let storage = match s {
            CpuStorage::F32(_) => CpuStorage::F32(y.flatten_all()?.to_vec1()?),
            _ => CpuStorage::F64(y.flatten_all()?.to_vec1()?),
        };
        Ok((storage, l.shape().clone()))
    }

    fn bwd(&self, _x: &Tensor, y: &Tensor, dy: &Tensor) -> Result<Option<Tensor>> {
        let dot = (dy * y)?.sum_keepdim(D::Minus1)?;
        Ok(Some((y * dy.broadcast_sub(&dot)?)?))
    }
}
