//! Layers next to their fast CPU ops: the kernels are candle custom ops, each with a backward
//! pass (conv2d through im2col/col2im and GEMM, GroupNorm fused with SiLU, 2× nearest
//! upsampling); [`layers`] wraps them as candle-nn style layers; [`init`] draws initial
//! weights from a seed.
//!
//! Every public function here takes and returns candle tensors. On the CPU with f32 data it
//! runs the custom op; on CUDA or Metal (or other dtypes) it falls back to candle's own ops,
//! so GPU paths keep working. `tests/kernels.rs` checks values and gradients against the
//! reference compositions.

pub mod attention;
pub mod cat;
pub mod conv;
mod conv_grad;
pub mod expf;
pub mod geglu;
pub mod group_norm;
mod im2col;
pub mod init;
pub mod layer_norm;
pub mod layers;
pub mod linear;
pub mod softmax;
pub mod transpose;
pub mod upsample;

pub use cat::cat_channels;
pub use conv::conv2d;
pub use geglu::geglu;
pub use group_norm::group_norm;
pub use layer_norm::layer_norm;
pub use linear::linear_add;
pub use transpose::transpose12;
pub use upsample::upsample_nearest2x;

use candle_core::{DType, Device, Tensor};
use gemm::Parallelism;

/// True when the custom CPU kernels apply to these tensors.
pub(crate) fn use_cpu_kernel(ts: &[&Tensor]) -> bool {
    ts.iter()
        .all(|t| matches!(t.device(), Device::Cpu) && t.dtype() == DType::F32)
}

/// The f32 data of a contiguous CPU tensor, or an error naming `what`.
pub(crate) fn contiguous_f32<'a>(
    s: &'a candle_core::CpuStorage,
    l: &candle_core::Layout,
    what: &str,
) -> candle_core::Result<&'a [f32]> {
    let data = s.as_slice::<f32>()?;
    match l.contiguous_offsets() {
        Some((a, b)) => Ok(&data[a..b]),
        None => candle_core::bail!("{what}: expected a contiguous tensor"),
    }
}

/// The f32 data of a contiguous tensor's storage (from `Tensor::storage_and_layout`), or an
/// error naming `what` when it is not on the CPU.
pub(crate) fn cpu_f32<'a>(
    s: &'a candle_core::Storage,
    l: &candle_core::Layout,
    what: &str,
) -> candle_core::Result<&'a [f32]> {
    match s {
        candle_core::Storage::Cpu(cs) => contiguous_f32(cs, l, what),
        _ => candle_core::bail!("{what}: expected a CPU tensor"),
    }
}

/// Runs `f` on one of rayon's worker threads (directly when already on one).
///
/// Every kernel splits its loops over rayon's pool. Started from a thread outside the pool,
/// each such loop hands its work over and sleeps until it is done, and a network runs
/// hundreds of small loops: that handoff cost 6 % of an emoji batch-1 forward and 8 % of a
/// training step. Started from inside the pool, the loops split directly. The results are
/// the same either way: how work is split depends only on the pool's size.
pub fn in_pool<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    match rayon::current_thread_index() {
        Some(_) => f(),
        None => rayon::scope(|_| f()),
    }
}

/// `n` values written by rayon's threads, in chunks of `chunk`: chunk `i` holds `value(i)`.
///
/// An output buffer made with `vec![0f32; n]` is zeroed by one thread (mimalloc clears a
/// reused block in the caller), and a training step makes hundreds of them: those serial
/// fills left the second core idle for about 5 % of an emoji training step.
pub(crate) fn filled_par(n: usize, chunk: usize, value: impl Fn(usize) -> f32 + Sync) -> Vec<f32> {
    use rayon::prelude::*;
    let mut v: Vec<f32> = Vec::with_capacity(n);
    v.spare_capacity_mut()
        .par_chunks_mut(chunk.max(1))
        .enumerate()
        .for_each(|(i, c)| c.fill(std::mem::MaybeUninit::new(value(i))));
    // SAFETY: the chunks above cover all `n` elements, each initialised.
    unsafe { v.set_len(n) };
    v
}

/// `n` zeros, written by rayon's threads ([`filled_par`]).
pub(crate) fn zeros_par(n: usize) -> Vec<f32> {
    filled_par(n, 1 << 15, |_| 0.0)
}

/// Rayon's thread count, which every kernel splits its work over.
pub(crate) fn threads() -> usize {
    rayon::current_num_threads().max(1)
}

/// `c[m×n] (+)= a[m×k] · b[k×n]` for row-major-or-strided f32 matrices.
///
/// Strides are (row stride, column stride) in elements. With `accumulate` the product is
/// added to `c`; otherwise `c` is overwritten.
///
/// # Safety
/// Each pointer must address a matrix of the given size and strides, and `c` must not alias
/// `a` or `b`.
#[allow(clippy::too_many_arguments)]
pub unsafe fn sgemm(
    (m, n, k): (usize, usize, usize),
    c: *mut f32,
    (c_rs, c_cs): (isize, isize),
    accumulate: bool,
    a: *const f32,
    (a_rs, a_cs): (isize, isize),
    b: *const f32,
    (b_rs, b_cs): (isize, isize),
    parallel: bool,
) {
    let par = if parallel && threads() > 1 {
        Parallelism::Rayon(threads())
    } else {
        Parallelism::None
    };
    // gemm's convention: dst = alpha·dst + beta·lhs·rhs, reading dst only when asked.
    gemm::gemm(
        m, n, k, c, c_cs, c_rs, accumulate, a, a_cs, a_rs, b, b_cs, b_rs, 1.0f32, 1.0f32, false,
        false, false, par,
    );
}
