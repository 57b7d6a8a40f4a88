//! Development aid for profiling: runs the UNet forward (or a training step) in a loop.
//! `cargo run --release --example unet_timing -- fwd 16 20` or `-- train 64 3`.
use candle_core::Device;
use diffuse::bench::UNetCase;
use diffuse::unet::UNetConfig;
use std::time::Instant;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    diffuse::alloc::keep_freed_memory();
    let args: Vec<String> = std::env::args().collect();
    let mode = args.get(1).map_or("fwd", |s| s.as_str()).to_string();
    let b: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(16);
    let n: usize = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(10);
    let c: usize = args.get(4).and_then(|s| s.parse().ok()).unwrap_or(64);
    let cfg = UNetConfig {
        base_channels: c,
        ..Default::default()
    };
    let case = UNetCase::new(&cfg, &Device::Cpu).unwrap();
    let (x, t, cond, e) = case.inputs(b).unwrap();
    let mut opt = case.optimizer().unwrap();
    let st = Instant::now();
    for _ in 0..n {
        if mode == "train" {
            case.train_step(&mut opt, &x, &t, &cond, &e).unwrap();
        } else {
            case.forward(&x, &t, &cond).unwrap();
        }
    }
    println!(
        "{mode} b{b}: {:.1} ms",
        st.elapsed().as_secs_f64() * 1e3 / n as f64
    );
}
