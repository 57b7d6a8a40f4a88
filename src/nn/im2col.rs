//! The geometry of a convolution and its data movement: im2col (input patches as columns
//! for the forward GEMM), col2im (the backward's scatter-add), and the per-sample split of
//! a batch over rayon's threads.

use std::cell::RefCell;

use candle_core::{Result, Shape};
use rayon::prelude::*;

use super::threads;

/// Sizes of one convolution.
#[derive(Debug, Clone, Copy)]
pub(super) struct Geom {
    pub(super) b: usize,
    pub(super) cin: usize,
    pub(super) h: usize,
    pub(super) w: usize,
    pub(super) cout: usize,
    pub(super) k: usize,
    pub(super) stride: usize,
    pub(super) pad: usize,
    pub(super) ho: usize,
    pub(super) wo: usize,
}

impl Geom {
    pub(super) fn new(x: &Shape, cout: usize, k: usize, stride: usize, pad: usize) -> Result<Self> {
        let (b, cin, h, w) = x.dims4()?;
        if h + 2 * pad < k || w + 2 * pad < k || stride == 0 {
            candle_core::bail!("conv2d: kernel {k} does not fit {h}x{w} with padding {pad}");
        }
        let ho = (h + 2 * pad - k) / stride + 1;
        let wo = (w + 2 * pad - k) / stride + 1;
        Ok(Self {
            b,
            cin,
            h,
            w,
            cout,
            k,
            stride,
            pad,
            ho,
            wo,
        })
    }
    /// Rows of the im2col matrix: Cin·k·k.
    pub(super) fn kdim(&self) -> usize {
        self.cin * self.k * self.k
    }
    /// Output pixels per channel: Ho·Wo.
    pub(super) fn pix(&self) -> usize {
        self.ho * self.wo
    }
    /// A 1×1, stride-1, unpadded conv needs no im2col: the input already is the matrix.
    pub(super) fn pointwise(&self) -> bool {
        self.k == 1 && self.stride == 1 && self.pad == 0
    }
    pub(super) fn x_len(&self) -> usize {
        self.cin * self.h * self.w
    }
    pub(super) fn y_len(&self) -> usize {
        self.cout * self.pix()
    }
    /// Split over samples when there are enough of them, else inside each GEMM.
    pub(super) fn batch_parallel(&self) -> bool {
        self.b >= threads() && threads() > 1
    }
}

thread_local! {
    /// Each thread's im2col scratch, kept between calls so that it is zeroed only when it
    /// grows (a fresh buffer per call cost a memset of the whole matrix every time).
    static SCRATCH: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

/// Runs `f` with this thread's scratch buffer, or a fresh one while it is in use (rayon may
/// run another job on a thread that waits inside `f`).
pub(super) fn with_scratch<R>(f: impl FnOnce(&mut Vec<f32>) -> R) -> R {
    SCRATCH.with(|s| match s.try_borrow_mut() {
        Ok(mut v) => f(&mut v),
        Err(_) => f(&mut Vec::new()),
    })
}

/// The first `len` elements of `buf`, growing it (zeroed) only when it is shorter.
pub(super) fn scratch(buf: &mut Vec<f32>, len: usize) -> &mut [f32] {
    if buf.len() < len {
        buf.resize(len, 0.0);
    }
    &mut buf[..len]
}

/// Runs `one(index, input, output, scratch, inner_parallel)` for every sample of the batch: the
/// samples in parallel when there are enough of them (each GEMM on one thread), else one by
/// one with each GEMM parallel. `input` and `output` hold `in_len` and `out_len` per sample;
/// `scratch` is the thread's reusable buffer (see [`scratch`]).
pub(super) fn per_sample(
    g: &Geom,
    input: &[f32],
    in_len: usize,
    output: &mut [f32],
    out_len: usize,
    one: impl Fn(usize, &[f32], &mut [f32], &mut Vec<f32>, bool) + Sync,
) {
    if g.batch_parallel() {
        output
            .par_chunks_mut(out_len)
            .zip(input.par_chunks(in_len))
            .enumerate()
            .for_each(|(i, (ob, ib))| with_scratch(|col| one(i, ib, ob, col, false)));
    } else {
        with_scratch(|col| {
            let samples = output.chunks_mut(out_len).zip(input.chunks(in_len));
            for (i, (ob, ib)) in samples.enumerate() {
                one(i, ib, ob, col, true);
            }
        });
    }
}

/// The range of output columns `ox` whose input column `ox·s + kx - p` is inside `0..w`.
pub(super) fn valid_range(g: &Geom, kx: usize) -> (usize, usize) {
    let (s, p) = (g.stride as isize, g.pad as isize);
    let off = kx as isize - p;
    // ox·s + off >= 0  and  ox·s + off <= w - 1
    let lo = if off >= 0 { 0 } else { (-off + s - 1) / s };
    let hi = ((g.w as isize - 1 - off) / s + 1).clamp(0, g.wo as isize);
    (lo.min(hi) as usize, hi as usize)
}

/// Unfolds one sample `x` `[Cin, H, W]` into `col` `[Cin·k·k, Ho·Wo]`; with `parallel`, the
/// input channels are spread over rayon's threads (the same bytes either way).
pub(super) fn im2col(g: &Geom, x: &[f32], col: &mut [f32], parallel: bool) {
    let (plane, rows) = (g.h * g.w, g.k * g.k * g.pix());
    let channels = col[..g.cin * rows].chunks_mut(rows).zip(x.chunks(plane));
    if parallel && g.cin > 1 {
        let channels: Vec<_> = channels.collect();
        channels
            .into_par_iter()
            .for_each(|(block, plane)| unfold_channel(g, plane, block));
    } else {
        channels.for_each(|(block, plane)| unfold_channel(g, plane, block));
    }
}

/// One input channel `plane` `[H, W]` into its `k·k` rows of the im2col matrix.
fn unfold_channel(g: &Geom, plane: &[f32], block: &mut [f32]) {
    let (k, s, p) = (g.k, g.stride, g.pad as isize);
    let same = s == 1 && g.ho == g.h && g.wo == g.w;
    for ky in 0..k {
        for kx in 0..k {
            let row = ky * k + kx;
            let dst = &mut block[row * g.pix()..(row + 1) * g.pix()];
            if same {
                unfold_shifted(g, plane, dst, ky as isize - p, kx as isize - p);
                continue;
            }
            let (lo, hi) = valid_range(g, kx);
            for oy in 0..g.ho {
                let d = &mut dst[oy * g.wo..(oy + 1) * g.wo];
                let iy = (oy * s + ky) as isize - p;
                if iy < 0 || iy >= g.h as isize || lo >= hi {
                    d.fill(0.0);
                    continue;
                }
                let src = &plane[iy as usize * g.w..(iy as usize + 1) * g.w];
                d[..lo].fill(0.0);
                d[hi..].fill(0.0);
                let ix0 = (lo * s) as isize + kx as isize - p;
                if s == 1 {
                    d[lo..hi].copy_from_slice(&src[ix0 as usize..ix0 as usize + hi - lo]);
                } else {
                    for (j, v) in d[lo..hi].iter_mut().enumerate() {
                        *v = src[ix0 as usize + j * s];
                    }
                }
            }
        }
    }
}

/// One im2col row of a stride-1 "same" convolution: `dst[y][x] = plane[y + dy][x + dx]`, zero
/// outside the plane. Output and input rows have the same width, so the valid rows are one
/// flat copy shifted by `dy·W + dx` (a few large copies instead of one per row); the `|dx|`
/// columns that wrapped into a neighbouring row are then zeroed.
fn unfold_shifted(g: &Geom, plane: &[f32], dst: &mut [f32], dy: isize, dx: isize) {
    let (h, w) = (g.h as isize, g.w as isize);
    let (y0, y1) = ((-dy).clamp(0, h), (h - dy).clamp(0, h));
    if y0 >= y1 || dx.abs() >= w {
        dst.fill(0.0);
        return;
    }
    let (d0, d1) = ((y0 * w) as usize, (y1 * w) as usize);
    dst[..d0].fill(0.0);
    dst[d1..].fill(0.0);
    // dst[i] = plane[i + shift] for i in d0..d1, clipped to the plane (the clipped ends are
    // wrapped columns, zeroed below).
    let shift = dy * w + dx;
    let lo = (d0 as isize).max(-shift) as usize;
    let hi = (d1 as isize).min(h * w - shift) as usize;
    dst[lo..hi]
        .copy_from_slice(&plane[(lo as isize + shift) as usize..(hi as isize + shift) as usize]);
    let cols = if dx < 0 {
        0..(-dx) as usize
    } else {
        (w - dx) as usize..w as usize
    };
    // Column by column down the rows: a strided loop, not a memset call per row.
    for c in cols {
        dst[d0 + c..d1]
            .iter_mut()
            .step_by(w as usize)
            .for_each(|v| *v = 0.0);
    }
}

/// `dst` [cols, rows] = `src` [rows, cols]ᵀ, in 16×16 tiles.
pub(super) fn transpose(src: &[f32], rows: usize, cols: usize, dst: &mut [f32]) {
    const T: usize = 16;
    for r0 in (0..rows).step_by(T) {
        for c0 in (0..cols).step_by(T) {
            for r in r0..(r0 + T).min(rows) {
                for c in c0..(c0 + T).min(cols) {
                    dst[c * rows + r] = src[r * cols + c];
                }
            }
        }
    }
}

/// Folds `col` `[Cin·k·k, Ho·Wo]` back, adding into `dx` `[Cin, H, W]`, which the caller
/// zeroes.
pub(super) fn col2im(g: &Geom, col: &[f32], dx: &mut [f32]) {
    let (k, s, p) = (g.k, g.stride, g.pad as isize);
    for ci in 0..g.cin {
        let plane = &mut dx[ci * g.h * g.w..(ci + 1) * g.h * g.w];
        for ky in 0..k {
            for kx in 0..k {
                let row = (ci * k + ky) * k + kx;
                let src = &col[row * g.pix()..(row + 1) * g.pix()];
                let (lo, hi) = valid_range(g, kx);
                if lo >= hi {
                    continue;
                }
                for oy in 0..g.ho {
                    let iy = (oy * s + ky) as isize - p;
                    if iy < 0 || iy >= g.h as isize {
                        continue;
                    }
                    let d = &mut plane[iy as usize * g.w..(iy as usize + 1) * g.w];
                    let c = &src[oy * g.wo..(oy + 1) * g.wo];
                    let ix0 = (lo * s) as isize + kx as isize - p;
                    if s == 1 {
                        let d = &mut d[ix0 as usize..ix0 as usize + hi - lo];
                        for (a, b) in d.iter_mut().zip(&c[lo..hi]) {
                            *a += b;
                        }
                    } else {
                        for (j, b) in c[lo..hi].iter().enumerate() {
                            d[ix0 as usize + j * s] += b;
                        }
                    }
                }
            }
        }
    }
}
