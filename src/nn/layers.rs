//! Small layers over the fast kernels: Conv2d, GroupNorm(+SiLU), LayerNorm and Linear, each a plain
//! struct of tensors with a constructor that names its weights and takes `vb` last.
//! Initialisation follows PyTorch's defaults (uniform ±1/√fan_in; GroupNorm γ = 1, β = 0).

use candle_core::{Module, Result, Tensor};
use candle_nn::{Init, VarBuilder};

use crate::nn;

fn fan_in_uniform(fan_in: usize) -> Init {
    let bound = 1.0 / (fan_in as f64).sqrt();
    Init::Uniform {
        lo: -bound,
        up: bound,
    }
}

/// A square-kernel 2D convolution with bias.
#[derive(Debug, Clone)]
pub struct Conv2d {
    pub weight: Tensor, // [cout, cin, k, k]
    pub bias: Tensor,   // [cout]
    pub stride: usize,
    pub padding: usize,
}

/// `k`×`k` conv from `cin` to `cout` channels; "same" padding for odd `k` at stride 1.
pub fn conv2d(cin: usize, cout: usize, k: usize, stride: usize, vb: VarBuilder) -> Result<Conv2d> {
    let init = fan_in_uniform(cin * k * k);
    Ok(Conv2d {
        weight: vb.get_with_hints((cout, cin, k, k), "weight", init)?,
        bias: vb.get_with_hints(cout, "bias", init)?,
        stride,
        padding: k / 2,
    })
}

impl Module for Conv2d {
    fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        nn::conv2d(
            xs,
            &self.weight,
            Some(&self.bias),
            self.stride,
            self.padding,
        )
    }
}

impl Conv2d {
    /// The convolution plus `addend`: `[B, Cout]` (per sample and channel) or a residual
    /// `[B, Cout, Ho, Wo]`, added inside the kernel when sampling ([`nn::conv::conv2d_add`]).
    pub fn forward_add(&self, xs: &Tensor, addend: &Tensor) -> Result<Tensor> {
        nn::conv::conv2d_add(
            xs,
            &self.weight,
            Some(&self.bias),
            self.stride,
            self.padding,
            addend,
        )
    }
}

/// GroupNorm with a learned per-channel affine, optionally fused with SiLU.
#[derive(Debug, Clone)]
pub struct GroupNorm {
    pub weight: Tensor, // γ [c]
    pub bias: Tensor,   // β [c]
    pub groups: usize,
}

/// PyTorch's GroupNorm eps.
pub const GROUP_NORM_EPS: f64 = 1e-5;

pub fn group_norm(groups: usize, c: usize, vb: VarBuilder) -> Result<GroupNorm> {
    Ok(GroupNorm {
        weight: vb.get_with_hints(c, "weight", Init::Const(1.0))?,
        bias: vb.get_with_hints(c, "bias", Init::Const(0.0))?,
        groups,
    })
}

impl GroupNorm {
    /// Normalises `[B, C, ...]`; applies SiLU after the affine when `silu`.
    pub fn forward(&self, xs: &Tensor, silu: bool) -> Result<Tensor> {
        nn::group_norm(
            xs,
            &self.weight,
            &self.bias,
            self.groups,
            GROUP_NORM_EPS,
            silu,
        )
    }
}

/// `y = x·Wᵀ + b` with PyTorch's default initialisation.
pub fn linear(din: usize, dout: usize, vb: VarBuilder) -> Result<candle_nn::Linear> {
    let init = fan_in_uniform(din);
    let w = vb.get_with_hints((dout, din), "weight", init)?;
    let b = vb.get_with_hints(dout, "bias", init)?;
    Ok(candle_nn::Linear::new(w, Some(b)))
}

/// `y = x·Wᵀ` (no bias), as Stable Diffusion's attention projections.
pub fn linear_no_bias(din: usize, dout: usize, vb: VarBuilder) -> Result<candle_nn::Linear> {
    let w = vb.get_with_hints((dout, din), "weight", fan_in_uniform(din))?;
    Ok(candle_nn::Linear::new(w, None))
}

/// LayerNorm over the last dimension with a learned scale and shift (γ = 1, β = 0 at init).
#[derive(Debug, Clone)]
pub struct LayerNorm {
    pub weight: Tensor, // [C]
    pub bias: Tensor,   // [C]
    pub eps: f64,
}

/// LayerNorm over `c` features, ε = 1e-5 (PyTorch's default).
pub fn layer_norm(c: usize, vb: VarBuilder) -> Result<LayerNorm> {
    Ok(LayerNorm {
        weight: vb.get_with_hints(c, "weight", Init::Const(1.0))?,
        bias: vb.get_with_hints(c, "bias", Init::Const(0.0))?,
        eps: 1e-5,
    })
}

impl Module for LayerNorm {
    /// `[…, C]` → `[…, C]`.
    fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        nn::layer_norm(xs, &self.weight, &self.bias, self.eps)
    }
}
