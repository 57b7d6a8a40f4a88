//! Concatenation along the channel axis, `[B, Ca, …] ++ [B, Cb, …] → [B, Ca + Cb, …]`, the
//! UNet's skip connections, with the copies and the backward's two slices spread over rayon's
//! threads (candle's `cat` and its `narrow`ed gradients copy on one thread). Off the CPU,
//! candle's `cat`.

use candle_core::{CpuStorage, CustomOp1, CustomOp2, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

use super::{contiguous_f32, use_cpu_kernel};

/// `a` `[B, Ca, …]` and `b` `[B, Cb, …]` → `[B, Ca + Cb, …]`.
pub fn cat_channels(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    if use_cpu_kernel(&[a, b]) && a.rank() >= 2 {
        return a.contiguous()?.apply_op2(&b.contiguous()?, CatChannels);
    }
    Tensor::cat(&[a, b], 1)
}

/// Elements per sample of `[B, C, …]` and per channel.
fn sizes(shape: &Shape) -> Result<(usize, usize, usize)> {
    let dims = shape.dims();
    if dims.len() < 2 {
        candle_core::bail!("cat_channels: {shape:?} has no channel axis");
    }
    Ok((dims[0], dims[1], dims[2..].iter().product()))
}

struct CatChannels;

impl CustomOp2 for CatChannels {
    fn name(&self) -> &'static str {
        "diffuse-cat-channels"
    }

    fn cpu_fwd(
        &self,
        sa: &CpuStorage,
        al: &Layout,
        bs: &CpuStorage,
        bl: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let ((n, ca, inner), (nb, cb, inner_b)) = (sizes(al.shape())?, sizes(bl.shape())?);
        if (n, inner) != (nb, inner_b) || al.dims()[2..] != bl.dims()[2..] {
            candle_core::bail!("cat_channels: {:?} and {:?}", al.shape(), bl.shape());
        }
        let a = contiguous_f32(sa, al, "cat_channels")?;
        let b = contiguous_f32(bs, bl, "cat_channels")?;
        let (la, lb) = (ca * inner, cb * inner);
        let mut out = super::zeros_par(n * (la + lb));
        out.par_chunks_mut((la + lb).max(1))
            .enumerate()
            .for_each(|(i, o)| {
                o[..la].copy_from_slice(&a[i * la..(i + 1) * la]);
                o[la..].copy_from_slice(&b[i * lb..(i + 1) * lb]);
            });
        let mut dims = al.dims().to_vec();
        dims[1] = ca + cb;
        Ok((CpuStorage::F32(out), Shape::from(dims)))
    }

    fn bwd(
        &self,
        a: &Tensor,
        b: &Tensor,
        _out: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let (ca, cb) = (a.dim(1)?, b.dim(1)?);
        let grad = grad.contiguous()?;
        let da = grad.apply_op1_no_bwd(&ChannelSlice { start: 0, len: ca })?;
        let db = grad.apply_op1_no_bwd(&ChannelSlice { start: ca, len: cb })?;
        Ok((Some(da), Some(db)))
    }
}

/// Channels `start..start + len` of `[B, C, …]`, copied.
struct ChannelSlice {
    start: usize,
    len: usize,
}

impl CustomOp1 for ChannelSlice {
    fn name(&self) -> &'static str {
        "diffuse-channel-slice"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let (n, c, inner) = sizes(l.shape())?;
        if self.start + self.len > c {
            candle_core::bail!("channel slice {}+{} of {c}", self.start, self.len);
        }
        let x = contiguous_f32(s, l, "channel slice")?;
        let len = self.len * inner;
        let mut out = super::zeros_par(n * len);
        if len > 0 {
            out.par_chunks_mut(len).enumerate().for_each(|(i, o)| {
                let from = (i * c + self.start) * inner;
                o.copy_from_slice(&x[from..from + len]);
            });
        }
        let mut dims = l.dims().to_vec();
        dims[1] = self.len;
        Ok((CpuStorage::F32(out), Shape::from(dims)))
    }
}
