//! GroupNorm, optionally fused with SiLU: `y = silu(γ·(x-μ_g)/σ_g + β)` over
//! `[B, C, ...]` with G groups of C/G consecutive channels. One pass forward, two backward
//! (input gradient; γ and β gradients), instead of candle's dozen elementwise ops.

use candle_core::{CpuStorage, CustomOp2, CustomOp3, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

use super::expf::exp_in_place;
use super::{contiguous_f32, use_cpu_kernel};

/// Σ f(v) over `x` with 16 independent f32 lanes (so it vectorises), combined in f64.
fn lane_sum(x: &[f32], f: impl Fn(f32) -> f32) -> f64 {
    let mut acc = [0f32; 16];
    let chunks = x.chunks_exact(16);
    let tail: f64 = chunks.remainder().iter().map(|&v| f(v) as f64).sum();
    for c in chunks {
        for (a, &v) in acc.iter_mut().zip(c) {
            *a += f(v);
        }
    }
    acc.iter().map(|&a| a as f64).sum::<f64>() + tail
}

/// Statistics of one group: (mean, 1/√(var + eps)), with the variance taken about the mean
/// (two passes) for accuracy.
fn stats(x: &[f32], eps: f64) -> (f32, f32) {
    let n = x.len() as f64;
    let mean = (lane_sum(x, |v| v) / n) as f32;
    let var = lane_sum(x, |v| (v - mean) * (v - mean)) / n;
    (mean, (1.0 / (var + eps).sqrt()) as f32)
}

#[derive(Debug, Clone, Copy)]
struct Dims {
    c: usize,
    inner: usize,
    groups: usize,
}

impl Dims {
    fn new(shape: &Shape, groups: usize) -> Result<Self> {
        let d = shape.dims();
        if d.len() < 2 || groups == 0 || d[1] % groups != 0 {
            candle_core::bail!(
                "group_norm: {groups} groups do not divide the channels of {shape:?}"
            );
        }
        Ok(Self {
            c: d[1],
            inner: d[2..].iter().product(),
            groups,
        })
    }
    fn cpg(&self) -> usize {
        self.c / self.groups
    }
    fn group_len(&self) -> usize {
        self.cpg() * self.inner
    }
}

/// Forward: inputs `x` and `gb` = stack(γ, β) `[2, C]`.
struct GroupNormFwd {
    groups: usize,
    eps: f64,
    silu: bool,
}

impl CustomOp2 for GroupNormFwd {
    fn name(&self) -> &'static str {
        "diffuse-group-norm"
    }

    fn cpu_fwd(
        &self,
        xs: &CpuStorage,
        xl: &Layout,
        gs: &CpuStorage,
        gl: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let d = Dims::new(xl.shape(), self.groups)?;
        let x = contiguous_f32(xs, xl, "group_norm")?;
        let gb = contiguous_f32(gs, gl, "group_norm")?;
        let (gamma, beta) = gb.split_at(d.c);
        let mut y = super::zeros_par(x.len());
        y.par_chunks_mut(d.group_len())
            .zip(x.par_chunks(d.group_len()))
            .enumerate()
            .for_each(|(i, (yg, xg))| {
                let (mean, rstd) = stats(xg, self.eps);
                let c0 = (i % d.groups) * d.cpg();
                for (j, (yc, xc)) in yg.chunks_mut(d.inner).zip(xg.chunks(d.inner)).enumerate() {
                    let scale = gamma[c0 + j] * rstd;
                    let shift = beta[c0 + j] - mean * scale;
                    if self.silu {
                        // z·σ(z) = z / (1 + e^(−z)), the exponentials a slice at a time.
                        for (o, &v) in yc.iter_mut().zip(xc) {
                            *o = -(v * scale + shift);
                        }
                        exp_in_place(yc);
                        for (o, &v) in yc.iter_mut().zip(xc) {
                            let z = v * scale + shift;
                            *o = z * (1.0 / (1.0 + *o));
                        }
                    } else {
                        for (o, &v) in yc.iter_mut().zip(xc) {
                            *o = v * scale + shift;
                        }
                    }
                }
            });
        Ok((CpuStorage::F32(y), xl.shape().clone()))
    }

    fn bwd(
        &self,
        x: &Tensor,
        gb: &Tensor,
        _y: &Tensor,
        dy: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let dy = dy.contiguous()?;
        let op = GroupNormBwd {
            groups: self.groups,
            eps: self.eps,
            silu: self.silu,
        };
        let both = x.apply_op3_no_bwd(gb, &dy, &GroupNormGrad(op))?; // [B·C·… + 2·C]
        let n = x.elem_count();
        let dx = both.narrow(0, 0, n)?.reshape(x.shape())?;
        let dgb = both.narrow(0, n, gb.elem_count())?.reshape(gb.shape())?;
        Ok((Some(dx), Some(dgb)))
    }
}

#[derive(Debug, Clone, Copy)]
struct GroupNormBwd {
    groups: usize,
    eps: f64,
    silu: bool,
}

/// The storage and layout of one custom-op input.
type Input<'a> = (&'a CpuStorage, &'a Layout);

impl GroupNormBwd {
    /// The backward ops' shared inputs: dims, x, dy, γ and β as contiguous slices.
    #[allow(clippy::type_complexity)]
    fn inputs<'a>(
        &self,
        x: Input<'a>,
        gamma_beta: Input<'a>,
        dy: Input<'a>,
    ) -> Result<(Dims, &'a [f32], &'a [f32], &'a [f32], &'a [f32])> {
        let d = Dims::new(x.1.shape(), self.groups)?;
        let x = contiguous_f32(x.0, x.1, "group_norm")?;
        let gb = contiguous_f32(gamma_beta.0, gamma_beta.1, "group_norm")?;
        let dy = contiguous_f32(dy.0, dy.1, "group_norm")?;
        let (gamma, beta) = gb.split_at(d.c);
        Ok((d, x, dy, gamma, beta))
    }

    /// For one group: fills `dz` with ∂L/∂z (z = γ·x̂ + β) and `xhat` with x̂; returns rstd.
    #[allow(clippy::too_many_arguments)]
    fn group(
        &self,
        d: &Dims,
        c0: usize,
        xg: &[f32],
        dyg: &[f32],
        gamma: &[f32],
        beta: &[f32],
        xhat: &mut [f32],
        dz: &mut [f32],
    ) -> f32 {
        let (mean, rstd) = stats(xg, self.eps);
        for j in 0..d.cpg() {
            let (g, b) = (gamma[c0 + j], beta[c0 + j]);
            let r = j * d.inner..(j + 1) * d.inner;
            for i in r.clone() {
                xhat[i] = (xg[i] - mean) * rstd;
            }
            if !self.silu {
                dz[r.clone()].copy_from_slice(&dyg[r]);
                continue;
            }
            // σ(z) = 1 / (1 + e^(−z)) for z = γ·x̂ + β, the exponentials a slice at a time.
            for i in r.clone() {
                dz[i] = -(g * xhat[i] + b);
            }
            exp_in_place(&mut dz[r.clone()]);
            for i in r {
                let z = g * xhat[i] + b;
                let s = 1.0 / (1.0 + dz[i]);
                dz[i] = dyg[i] * (s * (1.0 + z * (1.0 - s)));
            }
        }
        rstd
    }
}

/// Both gradients from one pass over each group (the SiLU and its `exp` computed once):
/// `∂L/∂x` `[B, C, ...]` followed by `∂L/∂γ, ∂L/∂β` `[2, C]`, flattened into one output.
///
/// ∂L/∂x = rstd·(γ·dz − mean(γ·dz) − x̂·mean(γ·dz·x̂)), means over the group;
/// ∂L/∂γ = Σ dz·x̂ and ∂L/∂β = Σ dz per channel, summed over the samples in order.
struct GroupNormGrad(GroupNormBwd);

impl GroupNormGrad {
    /// One group: fills `dxg` and returns its channels' (Σ dz·x̂, Σ dz).
    #[allow(clippy::too_many_arguments)]
    fn group(
        &self,
        d: &Dims,
        c0: usize,
        (xg, dyg): (&[f32], &[f32]),
        (gamma, beta): (&[f32], &[f32]),
        (xhat, dz): (&mut [f32], &mut [f32]),
        dxg: &mut [f32],
    ) -> Vec<(f64, f64)> {
        let rstd = self.0.group(d, c0, xg, dyg, gamma, beta, xhat, dz);
        let affine = (0..d.cpg())
            .map(|j| {
                let r = j * d.inner..(j + 1) * d.inner;
                let dg: f64 = dz[r.clone()]
                    .iter()
                    .zip(&xhat[r.clone()])
                    .map(|(a, b)| (a * b) as f64)
                    .sum();
                let db: f64 = dz[r].iter().map(|&a| a as f64).sum();
                (dg, db)
            })
            .collect();
        // dz becomes γ·dz, the gradient of x̂.
        let (mut m1, mut m2) = (0f64, 0f64);
        for j in 0..d.cpg() {
            let g = gamma[c0 + j];
            for i in j * d.inner..(j + 1) * d.inner {
                dz[i] *= g;
                m1 += dz[i] as f64;
                m2 += (dz[i] * xhat[i]) as f64;
            }
        }
        let n = d.group_len() as f64;
        let (m1, m2) = ((m1 / n) as f32, (m2 / n) as f32);
        for ((o, &g), &xh) in dxg.iter_mut().zip(dz.iter()).zip(xhat.iter()) {
            *o = rstd * (g - m1 - xh * m2);
        }
        affine
    }
}

impl CustomOp3 for GroupNormGrad {
    fn name(&self) -> &'static str {
        "diffuse-group-norm-grad"
    }

    fn cpu_fwd(
        &self,
        xs: &CpuStorage,
        xl: &Layout,
        gs: &CpuStorage,
        gl: &Layout,
        dys: &CpuStorage,
        dyl: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (d, x, dy, gamma, beta) = self.0.inputs((xs, xl), (gs, gl), (dys, dyl))?;
        let n = x.len();
        let mut out = super::zeros_par(n + 2 * d.c);
        let per_group: Vec<Vec<(f64, f64)>> = out[..n]
            .par_chunks_mut(d.group_len())
            .zip(
                x.par_chunks(d.group_len())
                    .zip(dy.par_chunks(d.group_len())),
            )
            .enumerate()
            .map_init(
                || (vec![0f32; d.group_len()], vec![0f32; d.group_len()]),
                |(xhat, dz), (i, (dxg, inputs))| {
                    let c0 = (i % d.groups) * d.cpg();
                    self.group(&d, c0, inputs, (gamma, beta), (xhat, dz), dxg)
                },
            )
            .collect();
        let mut affine = vec![0f64; 2 * d.c];
        for (i, chans) in per_group.iter().enumerate() {
            let c0 = (i % d.groups) * d.cpg();
            for (j, (dg, db)) in chans.iter().enumerate() {
                affine[c0 + j] += dg;
                affine[d.c + c0 + j] += db;
            }
        }
        for (o, v) in out[n..].iter_mut().zip(affine) {
            *o = v as f32;
        }
        Ok((CpuStorage::F32(out), Shape::from(n + 2 * d.c)))
    }
}

/// GroupNorm over `[B, C, ...]` with `groups` groups, affine `gamma`/`beta` `[C]`, then SiLU
/// when `silu`.
pub fn group_norm(
    x: &Tensor,
    gamma: &Tensor,
    beta: &Tensor,
    groups: usize,
    eps: f64,
    silu: bool,
) -> Result<Tensor> {
    if use_cpu_kernel(&[x, gamma, beta]) {
        let gb = Tensor::stack(&[gamma, beta], 0)?; // [2, C]
        return x
            .contiguous()?
            .apply_op2(&gb, GroupNormFwd { groups, eps, silu });
    }
    group_norm_reference(x, gamma, beta, groups, eps, silu)
}

/// candle-nn's GroupNorm (+ SiLU): the fallback on GPUs and the reference in tests.
pub fn group_norm_reference(
    x: &Tensor,
    gamma: &Tensor,
    beta: &Tensor,
    groups: usize,
    eps: f64,
    silu: bool,
) -> Result<Tensor> {
    let c = x.dim(1)?;
    let gn = candle_nn::GroupNorm::new(gamma.clone(), beta.clone(), c, groups, eps)?;
    let y = candle_core::Module::forward(&gn, x)?;
    if silu {
        candle_nn::ops::silu(&y)
    } else {
        Ok(y)
    }
}
