//! Criterion benches for the denoiser and the reverse process: each custom CPU op (forward
//! and forward+backward, against candle's reference composition), the whole UNet forward, a
//! training step, each sampler's own per-step cost, and end-to-end generation with frames
//! off and on. Run: `cargo bench --bench model`. Workloads come from `diffuse::bench`, the
//! same ones `diffuse bench` times.

use candle_core::{Device, Tensor, Var};
use criterion::{criterion_group, criterion_main, Criterion};
use diffuse::bench::{GenerateCase, SamplerCase, UNetCase};
use diffuse::nn::{conv, group_norm, upsample_nearest2x};
use diffuse::sampler::SamplerKind;
use diffuse::unet::UNetConfig;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn randn(seed: u64, shape: &[usize]) -> Tensor {
    diffuse::rng::randn(&mut diffuse::rng::rng(seed), shape, &Device::Cpu).unwrap()
}

/// Times `f` alone and with a backward pass through it.
fn fwd_bwd(c: &mut Criterion, name: &str, inputs: &[Tensor], f: impl Fn(&[Tensor]) -> Tensor) {
    let vars: Vec<Var> = inputs
        .iter()
        .map(|t| Var::from_tensor(t).unwrap())
        .collect();
    let ts: Vec<Tensor> = vars.iter().map(|v| v.as_tensor().clone()).collect();
    let mut g = c.benchmark_group(name);
    g.sample_size(10);
    g.bench_function("forward", |b| b.iter(|| f(&ts)));
    g.bench_function("forward+backward", |b| {
        b.iter(|| f(&ts).sum_all().unwrap().backward().unwrap())
    });
    g.finish();
}

fn ops(c: &mut Criterion) {
    diffuse::alloc::keep_freed_memory();
    // The UNet's widest 3×3 conv: batch 64, 64→32 channels at 32×32 (an up-path ResBlock).
    let conv_in = [
        randn(1, &[64, 64, 32, 32]),
        randn(2, &[32, 64, 3, 3]),
        randn(3, &[32]),
    ];
    fwd_bwd(c, "conv3x3_64to32_32px_b64/diffuse", &conv_in, |t| {
        conv::conv2d(&t[0], &t[1], Some(&t[2]), 1, 1).unwrap()
    });
    fwd_bwd(c, "conv3x3_64to32_32px_b64/candle", &conv_in, |t| {
        conv::conv2d_reference(&t[0], &t[1], Some(&t[2]), 1, 1).unwrap()
    });
    let gn_in = [
        randn(4, &[64, 32, 32, 32]),
        randn(5, &[32]),
        randn(6, &[32]),
    ];
    fwd_bwd(c, "group_norm_silu_32ch_32px_b64/diffuse", &gn_in, |t| {
        group_norm::group_norm(&t[0], &t[1], &t[2], 8, 1e-5, true).unwrap()
    });
    fwd_bwd(c, "group_norm_silu_32ch_32px_b64/candle", &gn_in, |t| {
        group_norm::group_norm_reference(&t[0], &t[1], &t[2], 8, 1e-5, true).unwrap()
    });
    let up_in = [randn(7, &[64, 64, 16, 16])];
    fwd_bwd(c, "upsample2x_64ch_16px_b64/diffuse", &up_in, |t| {
        upsample_nearest2x(&t[0]).unwrap()
    });
    fwd_bwd(c, "upsample2x_64ch_16px_b64/candle", &up_in, |t| {
        t[0].upsample_nearest2d(32, 32).unwrap()
    });
}

fn unet(c: &mut Criterion) {
    diffuse::alloc::keep_freed_memory();
    let case = UNetCase::new(&UNetConfig::default(), &Device::Cpu).unwrap();
    let mut g = c.benchmark_group("unet");
    g.sample_size(10);
    for b in [1usize, 16, 64] {
        let (x, t, cond, _) = case.inputs(b).unwrap();
        g.bench_function(format!("forward_b{b}"), |bn| {
            bn.iter(|| case.forward(&x, &t, &cond).unwrap())
        });
    }
    for b in [1usize, 8] {
        // Guidance 3: one forward of 2B images and the combination, as generate runs it.
        let (x, t, _, _) = case.inputs(b).unwrap();
        let nulls = vec![case.model.config.vocab.null_ids(); b];
        let guided =
            diffuse::pipeline::Guided::new(&case.model, 3.0, &case.cond_ids(b), &nulls).unwrap();
        g.bench_function(format!("guided_b{b}"), |bn| {
            bn.iter(|| guided.predict(&x, t[0] as usize).unwrap())
        });
    }
    let (x, t, cond, eps) = case.inputs(64).unwrap();
    let mut opt = case.optimizer().unwrap();
    g.bench_function("train_step_b64", |bn| {
        bn.iter(|| case.train_step(&mut opt, &x, &t, &cond, &eps).unwrap())
    });
    g.finish();
}

fn samplers(c: &mut Criterion) {
    let mut g = c.benchmark_group("sampler_50_steps_b8");
    for kind in [
        SamplerKind::Ddpm,
        SamplerKind::Ddim,
        SamplerKind::DpmSolverPP2M,
    ] {
        let case = SamplerCase::new(kind, 50, 8, &Device::Cpu).unwrap();
        g.bench_function(kind.to_string(), |b| b.iter(|| case.run().unwrap()));
    }
    g.finish();
}

fn generate(c: &mut Criterion) {
    diffuse::alloc::keep_freed_memory();
    let model = diffuse::model::load(None, &Device::Cpu).unwrap(); // the default, emoji64
    let out = std::env::temp_dir().join(format!("diffuse-criterion-{}", std::process::id()));
    let case = GenerateCase {
        model: &model,
        images: 1,
        steps: 10,
        out: out.clone(),
    };
    let mut g = c.benchmark_group("generate_1_image_10_steps");
    g.sample_size(10);
    g.bench_function("no_frames", |b| b.iter(|| case.sample(1).unwrap()));
    g.bench_function("all_frames_written", |b| {
        b.iter(|| case.generate(1).unwrap())
    });
    g.finish();
    let _ = std::fs::remove_dir_all(out);
}

/// `exp` over 64 K values (the SiLU's and softmax's inputs' range): libm one call per value
/// against `nn::expf::exp_in_place`, which returns the same bits.
fn expf(c: &mut Criterion) {
    let src: Vec<f32> = (0..65536).map(|i| -((i % 1000) as f32) * 0.01).collect();
    let mut buf = src.clone();
    let mut g = c.benchmark_group("expf_64k");
    g.bench_function("f32_exp", |b| {
        b.iter(|| {
            buf.copy_from_slice(&src);
            buf.iter_mut().for_each(|x| *x = x.exp());
        })
    });
    g.bench_function("exp_in_place", |b| {
        b.iter(|| {
            buf.copy_from_slice(&src);
            diffuse::nn::expf::exp_in_place(&mut buf);
        })
    });
    g.finish();
}

criterion_group!(benches, ops, expf, unet, samplers, generate);
criterion_main!(benches);
