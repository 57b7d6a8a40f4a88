//! Development aid for profiling: runs the UNet forward (or a training step) in a loop.
//! `cargo run --release --example unet_timing -- fwd 16 20 shapes` or `-- train 32 3 emoji`
//! (`fwd` runs on detached weights, as a loaded model does; `fwdgrad` on the trainer's
//! variables, recording the graph)
//! (or `latent`: the emoji network on 4×16×16 autoencoder latents);
//! a fifth argument `nox` drops the emoji model's cross-attention at 16 and 8 px, or sets the
//! channel multipliers (`1,2,2,2`).
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
    let mut cfg = match args.get(4).map(String::as_str) {
        Some("emoji") => UNetConfig::emoji(),
        // The latent model over an f=4 autoencoder's 4×16×16 latents (cross-attention at 8
        // and 4 px); `latent16`: also at 16 px, `latent16x` there with only_cross_attention.
        Some("latent") => UNetConfig::emoji_latent(&Default::default()),
        Some("latent16") => UNetConfig {
            cross_attention_resolutions: vec![16, 8, 4],
            ..UNetConfig::emoji_latent(&Default::default())
        },
        Some("latent16x") => UNetConfig {
            cross_attention_resolutions: vec![16, 8, 4],
            only_cross_attention: vec![16],
            ..UNetConfig::emoji_latent(&Default::default())
        },
        _ => UNetConfig::default(),
    };
    match args.get(5).map(String::as_str) {
        Some("nox") => cfg.cross_attention_resolutions.clear(),
        Some(mult) => cfg.channel_mult = mult.split(',').map(|m| m.parse().unwrap()).collect(),
        None => {}
    }
    let case = UNetCase::new(&cfg, &Device::Cpu).unwrap();
    println!(
        "{} parameters, {:.3} GFLOP per image",
        diffuse::unet::parameter_count(&case.varmap),
        cfg.flops_per_image() / 1e9
    );
    let (x, t, cond, e) = case.inputs(b).unwrap();
    let mut opt = case.optimizer().unwrap();
    let st = Instant::now();
    for _ in 0..n {
        match mode.as_str() {
            "train" => drop(case.train_step(&mut opt, &x, &t, &cond, &e).unwrap()),
            "fwdgrad" => drop(case.model.forward(&x, &t, &cond).unwrap()),
            _ => drop(case.forward(&x, &t, &cond).unwrap()),
        }
    }
    println!(
        "{mode} b{b}: {:.1} ms",
        st.elapsed().as_secs_f64() * 1e3 / n as f64
    );
}
