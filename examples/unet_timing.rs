//! Quick timing of the UNet (development aid; `diffuse bench --model-only` is the real one).
use candle_core::Device;
use candle_nn::Optimizer as _;
use diffuse::bench::UNetCase;
use diffuse::unet::UNetConfig;
use std::time::Instant;

fn main() {
    let cfg = UNetConfig::default();
    let case = UNetCase::new(&cfg, &Device::Cpu).unwrap();
    println!(
        "params {} gflop/img {:.3}",
        diffuse::unet::parameter_count(&case.varmap),
        cfg.flops_per_image() / 1e9
    );
    for b in [1usize, 16, 64] {
        let (x, t, c, _) = case.inputs(b).unwrap();
        case.forward(&x, &t, &c).unwrap();
        let n = if b == 64 { 3 } else { 10 };
        let st = Instant::now();
        for _ in 0..n {
            case.forward(&x, &t, &c).unwrap();
        }
        println!(
            "fwd b{b}: {:.1} ms",
            st.elapsed().as_secs_f64() * 1e3 / n as f64
        );
    }
    let (x, t, c, e) = case.inputs(64).unwrap();
    let mut opt = candle_nn::AdamW::new(case.varmap.all_vars(), Default::default()).unwrap();
    case.train_step(&mut opt, &x, &t, &c, &e).unwrap();
    let st = Instant::now();
    for _ in 0..3 {
        case.train_step(&mut opt, &x, &t, &c, &e).unwrap();
    }
    println!(
        "train b64: {:.1} ms",
        st.elapsed().as_secs_f64() * 1e3 / 3.0
    );
}
