//! The custom CPU kernels against candle's reference compositions: values and gradients,
//! on random inputs with odd sizes, batch 1, and channel counts that are not multiples of 8.

mod common;

use candle_core::{DType, Device, Tensor, Var};
use diffuse::nn::{conv, group_norm, upsample_nearest2x};
use diffuse::rng;

/// max|a - b| / max(max|b|, 1e-3): the relative error the issue bounds by 1e-4.
fn rel_err(a: &Tensor, b: &Tensor) -> f32 {
    assert_eq!(a.dims(), b.dims());
    let diff = common::max_abs_diff(a, b);
    let scale: f32 = b.abs().unwrap().max_all().unwrap().to_scalar().unwrap();
    diff / scale.max(1e-3)
}

fn randn(seed: u64, shape: &[usize]) -> Tensor {
    rng::randn(&mut rng::rng(seed), shape, &Device::Cpu).unwrap()
}

/// Runs `f` on fresh Vars made from `inputs`, backpropagates Σ(y ⊙ r), and returns y and
/// the gradient of every input.
fn value_and_grads(
    inputs: &[Tensor],
    r_seed: u64,
    f: impl Fn(&[Tensor]) -> Tensor,
) -> (Tensor, Vec<Tensor>) {
    let vars: Vec<Var> = inputs
        .iter()
        .map(|t| Var::from_tensor(t).unwrap())
        .collect();
    let ts: Vec<Tensor> = vars.iter().map(|v| v.as_tensor().clone()).collect();
    let y = f(&ts);
    let r = randn(r_seed, y.dims()).to_dtype(y.dtype()).unwrap();
    let loss = (&y * &r).unwrap().sum_all().unwrap();
    let grads = loss.backward().unwrap();
    let g = ts
        .iter()
        .map(|t| grads.get(t).expect("gradient").clone())
        .collect();
    (y, g)
}

/// Compares our f32 kernel with candle's composition run in f64 (so the comparison measures
/// our rounding, not the reference's).
fn check(
    name: &str,
    inputs: &[Tensor],
    ours: impl Fn(&[Tensor]) -> Tensor,
    reference: impl Fn(&[Tensor]) -> Tensor,
) {
    let (y1, g1) = value_and_grads(inputs, 99, ours);
    let wide: Vec<Tensor> = inputs
        .iter()
        .map(|t| t.to_dtype(DType::F64).unwrap())
        .collect();
    let (y2, g2) = value_and_grads(&wide, 99, reference);
    let narrow = |t: Tensor| t.to_dtype(DType::F32).unwrap();
    let (y2, g2): (Tensor, Vec<Tensor>) = (narrow(y2), g2.into_iter().map(narrow).collect());
    let e = rel_err(&y1, &y2);
    assert!(e <= 1e-4, "{name}: forward relative error {e}");
    for (i, (a, b)) in g1.iter().zip(&g2).enumerate() {
        let e = rel_err(a, b);
        assert!(
            e <= 1e-4,
            "{name}: gradient of input {i} relative error {e}"
        );
    }
}

#[test]
fn conv2d_matches_candle_in_values_and_gradients() {
    // (batch, cin, cout, h, w, k, stride, pad)
    let cases = [
        (1, 3, 5, 7, 9, 3, 1, 1),
        (2, 6, 10, 16, 16, 3, 1, 1),
        (4, 8, 12, 8, 8, 1, 1, 0),
        (1, 5, 3, 9, 6, 1, 1, 0),
        (5, 4, 6, 10, 10, 3, 2, 1),
        (2, 3, 4, 5, 7, 3, 1, 0),
        (1, 17, 9, 6, 6, 3, 2, 1),
        // Stride-1 "same" convolutions, whose im2col copies whole shifted planes: tiny
        // planes, a kernel wider than the plane, shifts past every edge.
        (1, 2, 3, 1, 1, 3, 1, 1),
        (2, 2, 3, 2, 5, 3, 1, 1),
        (1, 3, 2, 3, 4, 5, 1, 2),
        (1, 2, 2, 2, 2, 5, 1, 2),
    ];
    for (i, &(b, cin, cout, h, w, k, s, p)) in cases.iter().enumerate() {
        let seed = 10 * i as u64;
        let inputs = [
            randn(seed, &[b, cin, h, w]),
            randn(seed + 1, &[cout, cin, k, k]),
            randn(seed + 2, &[cout]),
        ];
        check(
            &format!("conv case {i}"),
            &inputs,
            |t| conv::conv2d(&t[0], &t[1], Some(&t[2]), s, p).unwrap(),
            |t| conv::conv2d_reference(&t[0], &t[1], Some(&t[2]), s, p).unwrap(),
        );
    }
}

/// <a, b> summed over every element.
fn dot(a: &Tensor, b: &Tensor) -> f64 {
    (a.to_dtype(DType::F64).unwrap() * b.to_dtype(DType::F64).unwrap())
        .unwrap()
        .sum_all()
        .unwrap()
        .to_scalar()
        .unwrap()
}

/// candle's own conv2d backward fails for a stride that does not divide the padded input
/// (`shape mismatch in add`), so on odd sizes with stride 2 the gradients are checked by the
/// adjoint identities instead: y is linear in x and in W, so for any probe P,
/// <conv(P, W), r> = <P, ∂L/∂x> and <conv(x, P), r> = <P, ∂L/∂W>, and ∂L/∂b = Σ r.
#[test]
fn conv2d_gradients_on_odd_strided_sizes_satisfy_the_adjoint_identities() {
    for (i, &(b, cin, cout, h, w)) in [
        (3usize, 13usize, 7usize, 11usize, 8usize),
        (1, 5, 9, 7, 9),
        (2, 4, 6, 9, 5),
    ]
    .iter()
    .enumerate()
    {
        let seed = 300 + 10 * i as u64;
        let x = randn(seed, &[b, cin, h, w]);
        let wt = randn(seed + 1, &[cout, cin, 3, 3]);
        let bias = randn(seed + 2, &[cout]);
        let (y, g) = value_and_grads(&[x.clone(), wt.clone(), bias.clone()], 5, |t| {
            conv::conv2d(&t[0], &t[1], Some(&t[2]), 2, 1).unwrap()
        });
        let reference = conv::conv2d_reference(&x, &wt, Some(&bias), 2, 1).unwrap();
        assert!(rel_err(&y, &reference) <= 1e-4, "case {i}: forward");
        let r = randn(5, y.dims());
        let px = randn(seed + 3, &[b, cin, h, w]);
        let pw = randn(seed + 4, &[cout, cin, 3, 3]);
        let lhs_x = dot(&conv::conv2d_reference(&px, &wt, None, 2, 1).unwrap(), &r);
        let lhs_w = dot(&conv::conv2d_reference(&x, &pw, None, 2, 1).unwrap(), &r);
        let rhs_x = dot(&px, &g[0]);
        let rhs_w = dot(&pw, &g[1]);
        assert!(
            (lhs_x - rhs_x).abs() <= 1e-4 * lhs_x.abs().max(1.0),
            "case {i}: dx {lhs_x} vs {rhs_x}"
        );
        assert!(
            (lhs_w - rhs_w).abs() <= 1e-4 * lhs_w.abs().max(1.0),
            "case {i}: dW {lhs_w} vs {rhs_w}"
        );
        let db = r.sum((0, 2, 3)).unwrap();
        assert!(rel_err(&g[2], &db) <= 1e-4, "case {i}: db");
    }
}

#[test]
fn conv2d_without_bias_and_on_strided_input() {
    let x = randn(1, &[2, 6, 9, 9]).transpose(2, 3).unwrap(); // not contiguous
    let w = randn(2, &[4, 6, 3, 3]);
    let ours = conv::conv2d(&x, &w, None, 1, 1).unwrap();
    let reference = conv::conv2d_reference(&x, &w, None, 1, 1).unwrap();
    assert!(rel_err(&ours, &reference) <= 1e-4);
}

#[test]
fn group_norm_with_and_without_silu_matches_candle() {
    // (batch, channels, h, w, groups)
    let cases = [
        (1, 8, 5, 7, 2),
        (3, 12, 4, 4, 4),
        (2, 6, 9, 3, 3),
        (4, 32, 8, 8, 8),
        (1, 10, 3, 1, 5),
    ];
    for (i, &(b, c, h, w, g)) in cases.iter().enumerate() {
        for silu in [false, true] {
            let seed = 100 + 10 * i as u64;
            let x = randn(seed, &[b, c, h, w]).affine(2.0, 0.5).unwrap();
            let inputs = [
                x,
                randn(seed + 1, &[c]).affine(0.5, 1.0).unwrap(),
                randn(seed + 2, &[c]).affine(0.3, 0.0).unwrap(),
            ];
            check(
                &format!("group norm case {i} silu={silu}"),
                &inputs,
                |t| group_norm::group_norm(&t[0], &t[1], &t[2], g, 1e-5, silu).unwrap(),
                |t| group_norm::group_norm_reference(&t[0], &t[1], &t[2], g, 1e-5, silu).unwrap(),
            );
        }
    }
}

#[test]
fn upsample_matches_candle() {
    for (i, shape) in [[1usize, 3, 4, 5], [3, 7, 8, 8], [2, 1, 1, 1]]
        .iter()
        .enumerate()
    {
        let inputs = [randn(200 + i as u64, shape)];
        check(
            &format!("upsample {shape:?}"),
            &inputs,
            |t| upsample_nearest2x(&t[0]).unwrap(),
            |t| {
                let (_, _, h, w) = t[0].dims4().unwrap();
                t[0].upsample_nearest2d(2 * h, 2 * w).unwrap()
            },
        );
    }
}

#[test]
fn cat_channels_equals_candles_cat_exactly_in_values_and_gradients() {
    let cases: [(&[usize], &[usize]); 3] = [
        (&[2, 3, 4, 5], &[2, 1, 4, 5]),
        (&[1, 2, 7], &[1, 5, 7]),
        (&[3, 4, 1, 1], &[3, 4, 1, 1]),
    ];
    for (i, (sa, sb)) in cases.into_iter().enumerate() {
        let inputs = [randn(300 + i as u64, sa), randn(310 + i as u64, sb)];
        let (y1, g1) = value_and_grads(&inputs, 5, |t| {
            diffuse::nn::cat_channels(&t[0], &t[1]).unwrap()
        });
        let (y2, g2) = value_and_grads(&inputs, 5, |t| Tensor::cat(&[&t[0], &t[1]], 1).unwrap());
        assert_eq!(y1.dims(), y2.dims());
        assert_eq!(values(&y1), values(&y2), "{sa:?} ++ {sb:?}");
        for (a, b) in g1.iter().zip(&g2) {
            assert_eq!(a.dims(), b.dims());
            assert_eq!(values(a), values(b), "gradient of {sa:?} ++ {sb:?}");
        }
    }
    let (a, b) = (randn(1, &[2, 3, 4]), randn(2, &[3, 3, 4]));
    assert!(
        diffuse::nn::cat_channels(&a, &b).is_err(),
        "batch 2 ++ batch 3"
    );
}

#[test]
fn transpose12_equals_candles_transpose_exactly_in_values_and_gradients() {
    for (i, shape) in [[2usize, 3, 4, 5], [1, 4, 6, 1], [3, 1, 2, 2]]
        .iter()
        .enumerate()
    {
        let inputs = [randn(320 + i as u64, shape)];
        let (y1, g1) = value_and_grads(&inputs, 6, |t| diffuse::nn::transpose12(&t[0]).unwrap());
        let (y2, g2) = value_and_grads(&inputs, 6, |t| {
            t[0].transpose(1, 2).unwrap().contiguous().unwrap()
        });
        assert_eq!(y1.dims(), y2.dims());
        assert_eq!(values(&y1), values(&y2), "{shape:?}");
        assert_eq!(values(&g1[0]), values(&g2[0]), "gradient of {shape:?}");
    }
}

#[test]
fn kernels_are_deterministic() {
    let x = randn(7, &[4, 16, 8, 8]);
    let w = randn(8, &[16, 16, 3, 3]);
    let run = || {
        let (_, g) = value_and_grads(&[x.clone(), w.clone()], 3, |t| {
            conv::conv2d(&t[0], &t[1], None, 1, 1).unwrap()
        });
        g[1].flatten_all().unwrap().to_vec1::<f32>().unwrap()
    };
    assert_eq!(run(), run());
}

/// The f32 values of a tensor, for exact comparisons.
fn values(t: &Tensor) -> Vec<f32> {
    t.flatten_all().unwrap().to_vec1().unwrap()
}

#[test]
fn conv2d_add_equals_conv2d_then_add_exactly_and_keeps_gradients() {
    // (batch, cin, cout, h, w, k, stride, pad): with and without a parallel batch.
    let cases = [
        (3, 5, 7, 6, 6, 3, 1, 1),
        (1, 4, 6, 12, 12, 3, 1, 1),
        (4, 6, 8, 12, 12, 3, 1, 1),
        (2, 6, 5, 8, 8, 1, 1, 0),
        (3, 4, 6, 9, 9, 3, 2, 1),
    ];
    for (i, &(b, cin, cout, h, w, k, s, p)) in cases.iter().enumerate() {
        let seed = 100 + 10 * i as u64;
        let (x, wt, bias) = (
            randn(seed, &[b, cin, h, w]),
            randn(seed + 1, &[cout, cin, k, k]),
            randn(seed + 2, &[cout]),
        );
        let y = conv::conv2d(&x, &wt, Some(&bias), s, p).unwrap();
        let (_, _, ho, wo) = y.dims4().unwrap();
        let per_channel = randn(seed + 3, &[b, cout]);
        let residual = randn(seed + 4, &[b, cout, ho, wo]);
        let want = y
            .broadcast_add(&per_channel.reshape((b, cout, 1, 1)).unwrap())
            .unwrap();
        let got = conv::conv2d_add(&x, &wt, Some(&bias), s, p, &per_channel).unwrap();
        assert_eq!(values(&got), values(&want), "case {i}: per-channel addend");
        let want = (&residual + &y).unwrap();
        let got = conv::conv2d_add(&x, &wt, Some(&bias), s, p, &residual).unwrap();
        assert_eq!(values(&got), values(&want), "case {i}: residual");
        // With gradients (training's fused op): the same values, and every input's gradient
        // bit for bit the composition's.
        for addend in [&per_channel, &residual] {
            let inputs = [x.clone(), wt.clone(), bias.clone(), addend.clone()];
            let (got, got_grads) = value_and_grads(&inputs, 7, |t| {
                conv::conv2d_add(&t[0], &t[1], Some(&t[2]), s, p, &t[3]).unwrap()
            });
            let (want, want_grads) = value_and_grads(&inputs, 7, |t| {
                let y = conv::conv2d(&t[0], &t[1], Some(&t[2]), s, p).unwrap();
                match t[3].rank() {
                    2 => y
                        .broadcast_add(&t[3].unsqueeze(2).unwrap().unsqueeze(3).unwrap())
                        .unwrap(),
                    _ => t[3].broadcast_add(&y).unwrap(),
                }
            });
            let what = format!("case {i}, addend {:?}", addend.dims());
            assert_eq!(values(&got), values(&want), "{what}: with gradients");
            for (j, (g, w)) in got_grads.iter().zip(&want_grads).enumerate() {
                assert_eq!(g.dims(), inputs[j].dims(), "{what}: gradient {j}");
                assert!(values(g) == values(w), "{what}: gradient {j} differs");
            }
        }
    }
    let x = randn(1, &[2, 3, 4, 4]);
    let wt = randn(2, &[5, 3, 3, 3]);
    let wrong = randn(3, &[2, 4]);
    let err = conv::conv2d_add(&x, &wt, None, 1, 1, &wrong).unwrap_err();
    assert!(err.to_string().contains("conv2d addend"), "{err}");
}

#[test]
fn linear_add_equals_candles_linear_then_add_exactly() {
    use candle_core::Module;
    for (i, &(rows, din, dout, bias)) in [(1, 7, 5, true), (37, 16, 24, true), (64, 9, 40, false)]
        .iter()
        .enumerate()
    {
        let seed = 200 + 10 * i as u64;
        let x = randn(seed, &[rows, 3, din]);
        let w = randn(seed + 1, &[dout, din]);
        let b = bias.then(|| randn(seed + 2, &[dout]));
        let lin = candle_nn::Linear::new(w, b);
        let residual = randn(seed + 3, &[rows, 3, dout]);
        let y = lin.forward(&x).unwrap();
        let got = diffuse::nn::linear_add(&lin, &x, None).unwrap();
        assert_eq!(got.dims(), y.dims());
        assert_eq!(values(&got), values(&y), "case {i}: no residual");
        let got = diffuse::nn::linear_add(&lin, &x, Some(&residual)).unwrap();
        assert_eq!(values(&got), values(&(&residual + &y).unwrap()), "case {i}");
        let (got, grads) = value_and_grads(&[x.clone(), residual.clone()], 5, |t| {
            diffuse::nn::linear_add(&lin, &t[0], Some(&t[1])).unwrap()
        });
        assert_eq!(values(&got), values(&(&residual + &y).unwrap()));
        assert_eq!(grads[0].dims(), x.dims());
    }
    let lin = candle_nn::Linear::new(randn(1, &[4, 6]), None);
    let err =
        diffuse::nn::linear_add(&lin, &randn(2, &[3, 6]), Some(&randn(3, &[3, 5]))).unwrap_err();
    assert!(err.to_string().contains("residual"), "{err}");
}

#[test]
fn exp_in_place_is_bit_for_bit_f32_exp() {
    // Every 61st bit pattern (70 M floats: every exponent, both signs, NaNs, subnormals)
    // plus the edges of glibc's fast path, in slices of odd length so the tail runs too.
    let edges = [
        0.0,
        -0.0,
        f32::INFINITY,
        f32::NEG_INFINITY,
        f32::NAN,
        f32::MIN_POSITIVE,
        88.0,
        -88.0,
        87.99999,
        88.72283,
        88.72284,
        -103.97207,
        -103.97208,
        f32::MAX,
        f32::MIN,
    ];
    let mut xs: Vec<f32> = (0..=u32::MAX).step_by(61).map(f32::from_bits).collect();
    xs.extend(edges);
    let want: Vec<u32> = xs.iter().map(|x| x.exp().to_bits()).collect();
    for chunk in [xs.len(), 13, 8, 7] {
        let mut got = xs.clone();
        got.chunks_mut(chunk)
            .for_each(diffuse::nn::expf::exp_in_place);
        let bad = got
            .iter()
            .zip(&want)
            .position(|(g, w)| g.to_bits() != *w && !(g.is_nan() && f32::from_bits(*w).is_nan()));
        if let Some(i) = bad {
            panic!(
                "exp({:e}) = {:e}, f32::exp gives {:e}",
                xs[i],
                got[i],
                f32::from_bits(want[i])
            );
        }
    }
}

#[test]
fn linear_add_with_gradients_matches_candles_linear_bit_for_bit() {
    // Training's bias add has its own backward (a column sum); values and all four
    // gradients must be candle's, for 2-D and 3-D inputs.
    for (i, dims) in [&[5usize, 7][..], &[3, 4, 7]].iter().enumerate() {
        let mut out_dims = dims.to_vec();
        *out_dims.last_mut().unwrap() = 6;
        let seed = 300 + 10 * i as u64;
        let inputs = [
            randn(seed, dims),
            randn(seed + 1, &[6, 7]),
            randn(seed + 2, &[6]),
            randn(seed + 3, &out_dims),
        ];
        let lin = |t: &[Tensor]| candle_nn::Linear::new(t[1].clone(), Some(t[2].clone()));
        let (got, got_grads) = value_and_grads(&inputs, 9, |t| {
            diffuse::nn::linear_add(&lin(t), &t[0], Some(&t[3])).unwrap()
        });
        let (want, want_grads) = value_and_grads(&inputs, 9, |t| {
            (&t[3] + candle_core::Module::forward(&lin(t), &t[0]).unwrap()).unwrap()
        });
        assert_eq!(values(&got), values(&want), "dims {dims:?}");
        for (j, (g, w)) in got_grads.iter().zip(&want_grads).enumerate() {
            assert_eq!(g.dims(), inputs[j].dims(), "dims {dims:?}: gradient {j}");
            assert!(
                values(g) == values(w),
                "dims {dims:?}: gradient {j} differs"
            );
        }
    }
}

/// diffuse builds against `vendor/candle-core` (Cargo.toml's `[patch]`), whose backward stores a
/// node's first gradient as it is instead of adding it to zeros. The sign of a zero shows
/// which candle ran: 0 + (−0) = +0, so crates.io's candle turns a −0 gradient into +0.
#[test]
fn backward_stores_the_first_gradient_as_is() {
    let x = Var::new(&[1f32, 2.0], &Device::Cpu).unwrap();
    let minus_zero = Tensor::new(&[-0f32, -0.0], &Device::Cpu).unwrap();
    let loss = (x.as_tensor() * minus_zero).unwrap().sum_all().unwrap(); // d loss / dx = −0
    let grads = loss.backward().unwrap();
    let g: Vec<f32> = grads.get(&x).unwrap().to_vec1().unwrap();
    assert!(
        g.iter().all(|v| *v == 0.0 && v.is_sign_negative()),
        "gradient {g:?}: is the [patch] of candle-core in Cargo.toml gone?"
    );
}
