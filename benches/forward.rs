//! Criterion benches for forward diffusion: `q_sample` throughput and frame encoding.
//! Run: `cargo bench --bench forward`. The workloads live in `diffuse::bench`.

use candle_core::Device;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use diffuse::bench::{FrameCase, QSampleCase};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn q_sample(c: &mut Criterion) {
    diffuse::alloc::keep_freed_memory();
    let mut g = c.benchmark_group("q_sample");
    for (name, batch, side) in [("32x32_batch64", 64, 32), ("512x512_batch1", 1, 512)] {
        let case = QSampleCase::new(batch, side, side, &Device::Cpu).unwrap();
        g.throughput(Throughput::Elements(case.images() as u64));
        g.bench_function(name, |b| b.iter(|| case.run().unwrap()));
    }
    g.finish();
}

fn frame_encoding(c: &mut Criterion) {
    let mut g = c.benchmark_group("frames_50x512x512");
    g.sample_size(10);
    let case = FrameCase::new(50, 512, 512).unwrap();
    g.throughput(Throughput::Elements(case.frames.len() as u64));
    g.bench_function("png", |b| b.iter(|| case.encode_png().unwrap()));
    g.bench_function("gif", |b| b.iter(|| case.encode_gif().unwrap()));
    g.finish();
}

criterion_group!(benches, q_sample, frame_encoding);
criterion_main!(benches);
