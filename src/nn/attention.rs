//! Scaled dot-product attention `softmax(q·kᵀ·scale)·v` as one fused CPU op with a fused
//! backward pass, and Stable Diffusion's attention layer around it: self-attention when no
//! context is given, cross-attention to the text tokens otherwise.
//!
//! Shapes: `q` `[B, Nq, d]`, `k` and `v` `[B, Nk, d]` → `[B, Nq, d]`, where B counts batch
//! and heads together. The op works head by head in parallel: two GEMMs and a row softmax
//! forward; the backward recomputes the probabilities (nothing `[B, Nq, Nk]` is kept between
//! the passes) and takes four GEMMs. On other devices or dtypes the candle composition runs.

use candle_core::{CpuStorage, CustomOp3, Layout, Result, Shape, Tensor};
use candle_nn::VarBuilder;
use rayon::prelude::*;

use super::expf::exp_in_place;
use super::layers::{linear, linear_no_bias};
use super::linear::linear_add;
use super::{contiguous_f32, sgemm, use_cpu_kernel};

/// `softmax(q·kᵀ·scale)` `[B, Nq, Nk]`: which keys each query attends to.
pub fn attention_probs(q: &Tensor, k: &Tensor, scale: f64) -> Result<Tensor> {
    let logits = q.matmul(&k.t()?)?.affine(scale, 0.0)?; // [B, Nq, Nk]
    super::softmax::softmax_last_dim(&logits)
}

/// `softmax(q·kᵀ·scale)·v` `[B, Nq, d]` as candle ops: the reference and the GPU path.
pub fn attention_reference(q: &Tensor, k: &Tensor, v: &Tensor, scale: f64) -> Result<Tensor> {
    attention_probs(q, k, scale)?.matmul(v)
}

/// `softmax(q·kᵀ·scale)·v` `[B, Nq, d]`.
pub fn attention(q: &Tensor, k: &Tensor, v: &Tensor, scale: f64) -> Result<Tensor> {
    let (dq, dv) = (q.dim(2)?, v.dim(2)?);
    if use_cpu_kernel(&[q, k, v]) && dq == dv {
        let op = AttentionFwd {
            scale: scale as f32,
        };
        return q
            .contiguous()?
            .apply_op3(&k.contiguous()?, &v.contiguous()?, op);
    }
    attention_reference(q, k, v, scale)
}

/// Sizes of one attention call.
#[derive(Debug, Clone, Copy)]
struct Dims {
    /// Batch × heads, queries, keys, head width.
    b: usize,
    n: usize,
    l: usize,
    d: usize,
}

impl Dims {
    fn new(q: &Layout, k: &Layout) -> Result<Self> {
        let (b, n, d) = q.shape().dims3()?;
        let (bk, l, dk) = k.shape().dims3()?;
        if bk != b || dk != d {
            candle_core::bail!(
                "attention: q {:?} and k {:?} do not match",
                q.shape(),
                k.shape()
            );
        }
        Ok(Self { b, n, l, d })
    }
}

/// `p = softmax(scale · q·kᵀ)` for one head: `q` `[n, d]`, `k` `[l, d]`, `p` `[n, l]`.
fn probs(dims: Dims, scale: f32, q: &[f32], k: &[f32], p: &mut [f32]) {
    let Dims { n, l, d, .. } = dims;
    // p [n, l] = q [n, d] · kᵀ [d, l]; kᵀ is k read with swapped strides.
    unsafe {
        sgemm(
            (n, l, d),
            p.as_mut_ptr(),
            (l as isize, 1),
            false,
            q.as_ptr(),
            (d as isize, 1),
            k.as_ptr(),
            (1, d as isize),
            false,
        )
    };
    for row in p.chunks_mut(l) {
        let max = row.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v));
        row.iter_mut().for_each(|v| *v = (*v - max) * scale);
        exp_in_place(row);
        let inv = 1.0 / row.iter().fold(0f32, |sum, &v| sum + v);
        row.iter_mut().for_each(|v| *v *= inv);
    }
}

/// `c [m, n] = a [m, k] · b [k, n]` for row-major blocks, with `a` or `b` read transposed.
#[allow(clippy::too_many_arguments)]
fn matmul(
    (m, n, k): (usize, usize, usize),
    c: &mut [f32],
    a: &[f32],
    a_t: bool,
    b: &[f32],
    b_t: bool,
) {
    // Row-major [r, c] has strides (c, 1); its transpose is read with (1, c).
    let a_s = if a_t {
        (1, m as isize)
    } else {
        (k as isize, 1)
    };
    let b_s = if b_t {
        (1, k as isize)
    } else {
        (n as isize, 1)
    };
    unsafe {
        sgemm(
            (m, n, k),
            c.as_mut_ptr(),
            (n as isize, 1),
            false,
            a.as_ptr(),
            a_s,
            b.as_ptr(),
            b_s,
            false,
        )
    };
}

struct AttentionFwd {
    scale: f32,
}

impl CustomOp3 for AttentionFwd {
    fn name(&self) -> &'static str {
        "diffuse-attention"
    }

    fn cpu_fwd(
        &self,
        qs: &CpuStorage,
        ql: &Layout,
        ks: &CpuStorage,
        kl: &Layout,
        vs: &CpuStorage,
        vl: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let dims = Dims::new(ql, kl)?;
        let Dims { b, n, l, d } = dims;
        if vl.shape().dims3()? != (b, l, d) {
            candle_core::bail!(
                "attention: v {:?} does not match k {:?}",
                vl.shape(),
                kl.shape()
            );
        }
        let q = contiguous_f32(qs, ql, "attention q")?;
        let k = contiguous_f32(ks, kl, "attention k")?;
        let v = contiguous_f32(vs, vl, "attention v")?;
        let mut out = super::zeros_par(b * n * d);
        out.par_chunks_mut(n * d)
            .enumerate()
            .for_each_init(Vec::new, |p, (i, ob)| {
                p.resize(n * l, 0.0);
                probs(
                    dims,
                    self.scale,
                    &q[i * n * d..][..n * d],
                    &k[i * l * d..][..l * d],
                    p,
                );
                // out [n, d] = p [n, l] · v [l, d]
                matmul((n, d, l), ob, p, false, &v[i * l * d..][..l * d], false);
            });
        Ok((CpuStorage::F32(out), Shape::from((b, n, d))))
    }

    fn bwd(
        &self,
        q: &Tensor,
        k: &Tensor,
        v: &Tensor,
        _out: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let (n, l) = (q.dim(1)?, k.dim(1)?);
        let v_do = Tensor::cat(&[v, &grad.contiguous()?], 1)?; // [B, L + N, d]
        let op = AttentionBwd { scale: self.scale };
        let g = q.apply_op3_no_bwd(k, &v_do, &op)?; // [B, N + 2L, d]
        Ok((
            Some(g.narrow(1, 0, n)?),
            Some(g.narrow(1, n, l)?),
            Some(g.narrow(1, n + l, l)?),
        ))
    }
}

/// The gradients of q, k and v from q, k and [v; dO], packed as `[B, N + 2L, d]`.
struct AttentionBwd {
    scale: f32,
}

impl AttentionBwd {
    /// One head: `q` `[n, d]`, `k` `[l, d]`, `v_do` = [v `[l, d]`; dO `[n, d]`] → `g` =
    /// [dq `[n, d]`; dk `[l, d]`; dv `[l, d]`], with scratch for p and dp.
    fn head(&self, dims: Dims, q: &[f32], k: &[f32], v_do: &[f32], g: &mut [f32], s: &mut Scratch) {
        let Dims { n, l, d, .. } = dims;
        let (v, d_o) = v_do.split_at(l * d);
        probs(dims, self.scale, q, k, &mut s.p);
        matmul((n, l, d), &mut s.dp, d_o, false, v, true); // dP = dO·vᵀ
        let (dq, rest) = g.split_at_mut(n * d);
        let (dk, dv) = rest.split_at_mut(l * d);
        matmul((l, d, n), dv, &s.p, true, d_o, false); // dv = Pᵀ·dO
                                                       // dS = scale · P ⊙ (dP − rowsum(P ⊙ dP)), in place of dP.
        for (prow, dprow) in s.p.chunks(l).zip(s.dp.chunks_mut(l)) {
            let dot: f32 = prow.iter().zip(dprow.iter()).map(|(a, b)| a * b).sum();
            for (x, &pv) in dprow.iter_mut().zip(prow) {
                *x = self.scale * pv * (*x - dot);
            }
        }
        matmul((n, d, l), dq, &s.dp, false, k, false); // dq = dS·k
        matmul((l, d, n), dk, &s.dp, true, q, false); // dk = dSᵀ·q
    }
}

#[derive(Default)]
struct Scratch {
    p: Vec<f32>,
    dp: Vec<f32>,
}

impl CustomOp3 for AttentionBwd {
    fn name(&self) -> &'static str {
        "diffuse-attention-grad"
    }

    fn cpu_fwd(
        &self,
        qs: &CpuStorage,
        ql: &Layout,
        ks: &CpuStorage,
        kl: &Layout,
        vs: &CpuStorage,
        vl: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let dims = Dims::new(ql, kl)?;
        let Dims { b, n, l, d } = dims;
        if vl.shape().dims3()? != (b, l + n, d) {
            candle_core::bail!("attention grad: [v; dO] has shape {:?}", vl.shape());
        }
        let q = contiguous_f32(qs, ql, "attention q")?;
        let k = contiguous_f32(ks, kl, "attention k")?;
        let v_do = contiguous_f32(vs, vl, "attention [v; dO]")?;
        let per = (n + 2 * l) * d;
        let mut g = super::zeros_par(b * per);
        g.par_chunks_mut(per)
            .enumerate()
            .for_each_init(Scratch::default, |s, (i, gb)| {
                s.p.resize(n * l, 0.0);
                s.dp.resize(n * l, 0.0);
                let qi = &q[i * n * d..][..n * d];
                let ki = &k[i * l * d..][..l * d];
                let vi = &v_do[i * (l + n) * d..][..(l + n) * d];
                self.head(dims, qi, ki, vi, gb, s);
            });
        Ok((CpuStorage::F32(g), Shape::from((b, n + 2 * l, d))))
    }
}

/// Multi-head attention with SD's projections: `to_q`, `to_k`, `to_v` without bias, `to_out`
/// with bias.
#[derive(Debug, Clone)]
pub struct MultiHeadAttention {
    to_q: candle_nn::Linear,
    to_k: candle_nn::Linear,
    to_v: candle_nn::Linear,
    to_out: candle_nn::Linear,
    heads: usize,
}

/// Attention from `dim`-wide queries to `context_dim`-wide keys and values (`dim` for
/// self-attention), with `heads` heads.
pub fn multi_head_attention(
    dim: usize,
    context_dim: usize,
    heads: usize,
    vb: VarBuilder,
) -> Result<MultiHeadAttention> {
    Ok(MultiHeadAttention {
        to_q: linear_no_bias(dim, dim, vb.pp("to_q"))?,
        to_k: linear_no_bias(context_dim, dim, vb.pp("to_k"))?,
        to_v: linear_no_bias(context_dim, dim, vb.pp("to_v"))?,
        to_out: linear(dim, dim, vb.pp("to_out"))?,
        heads,
    })
}

impl MultiHeadAttention {
    /// `[B, N, C]` → `[B·heads, N, C/heads]`.
    fn split_heads(&self, x: &Tensor) -> Result<Tensor> {
        let (b, n, c) = x.dims3()?;
        let hd = c / self.heads;
        let x = super::transpose12(&x.reshape((b, n, self.heads, hd))?)?; // [B, heads, N, hd]
        x.reshape((b * self.heads, n, hd))
    }

    /// The per-head queries and keys: `[B·heads, N, hd]`, `[B·heads, L, hd]`.
    fn qk(&self, x: &Tensor, context: &Tensor) -> Result<(Tensor, Tensor)> {
        let q = self.split_heads(&linear_add(&self.to_q, x, None)?)?;
        let k = self.split_heads(&linear_add(&self.to_k, context, None)?)?;
        Ok((q, k))
    }

    fn scale(&self, x: &Tensor) -> Result<f64> {
        let hd = x.dim(2)? / self.heads;
        Ok(1.0 / (hd as f64).sqrt())
    }

    /// `x` `[B, N, C]` attending to `context` `[B, L, Cctx]` (or to itself) → `[B, N, C]`.
    pub fn forward(&self, x: &Tensor, context: Option<&Tensor>) -> Result<Tensor> {
        self.forward_add(x, context, None)
    }

    /// [`Self::forward`] plus `residual` `[B, N, C]`, added with the output projection's bias.
    pub fn forward_add(
        &self,
        x: &Tensor,
        context: Option<&Tensor>,
        residual: Option<&Tensor>,
    ) -> Result<Tensor> {
        let (b, n, c) = x.dims3()?;
        let context = context.unwrap_or(x);
        let (q, k) = self.qk(x, context)?;
        let v = self.split_heads(&linear_add(&self.to_v, context, None)?)?; // [B·heads, L, hd]
        let out = attention(&q, &k, &v, self.scale(x)?)?; // [B·heads, N, hd]
        let out = super::transpose12(&out.reshape((b, self.heads, n, c / self.heads))?)?; // [B, N, heads, hd]
        let out = out.reshape((b, n, c))?;
        linear_add(&self.to_out, &out, residual)
    }

    /// The attention probabilities `[B, heads, N, L]` of `x` over `context`.
    pub fn probs(&self, x: &Tensor, context: &Tensor) -> Result<Tensor> {
        let (b, n, _) = x.dims3()?;
        let (q, k) = self.qk(x, context)?;
        let l = k.dim(1)?;
        attention_probs(&q, &k, self.scale(x)?)?.reshape((b, self.heads, n, l))
    }
}
