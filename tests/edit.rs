//! Editing against diffusers 0.42: RePaint's timestep sequences exactly, a whole RePaint run
//! (model steps and undo steps) and DDIM inversion step by step within 1e-5, on the closed-form
//! inputs of `tests/reference/gen_edit.py` (which made `tests/data/diffusers_edit.json` and says
//! how). Also slerp's end points and the inversion round trip on a stand-in model.

mod common;

use candle_core::{Device, Tensor};
use diffuse::edit::inpaint::Known;
use diffuse::edit::interpolate::{slerp, weights};
use diffuse::edit::invert::{check_invertible, ddim_invert, psnr};
use diffuse::edit::repaint::{repaint_timesteps, RePaint};
use diffuse::sampler::{ddim, SamplerConfig, SamplerKind, TimestepSpacing};
use diffuse::schedule::{NoiseSchedule, ScheduleConfig};

const REFERENCE: &str = include_str!("data/diffusers_edit.json");
const N: usize = 48;

fn reference() -> serde_json::Value {
    serde_json::from_str(REFERENCE).unwrap()
}

fn tensor(v: Vec<f32>) -> Tensor {
    Tensor::from_vec(v, (1, 3, 4, 4), &Device::Cpu).unwrap()
}

fn closed_form(f: impl Fn(f64) -> f64) -> Tensor {
    tensor((0..N).map(|i| f(i as f64) as f32).collect())
}

fn x_init() -> Tensor {
    closed_form(|i| (0.37 * i + 0.1).sin() * 1.3)
}

/// The stand-in denoiser: 0.6·x + 0.2·cos(0.01·t + 0.3·i).
fn fake_model(x: &Tensor, t: usize) -> diffuse::Result<Tensor> {
    let cos = closed_form(|i| 0.2 * (0.01 * t as f64 + 0.3 * i).cos());
    Ok((x.affine(0.6, 0.0)? + cos)?)
}

fn schedule() -> NoiseSchedule {
    NoiseSchedule::new(ScheduleConfig::default()).unwrap()
}

fn assert_close(got: &Tensor, want: &serde_json::Value, what: &str) {
    let want: Vec<f32> = serde_json::from_value(want.clone()).unwrap();
    let got = common::to_vec(got);
    for (i, (g, w)) in got.iter().zip(&want).enumerate() {
        assert!((g - w).abs() < 1e-5, "{what} [{i}]: {g} vs {w}");
    }
}

#[test]
fn repaint_timesteps_match_diffusers_exactly() {
    let cases = reference()["repaint_timesteps"].as_array().unwrap().clone();
    assert_eq!(cases.len(), 7);
    for c in cases {
        let n = |k: &str| c[k].as_u64().unwrap() as usize;
        let got =
            repaint_timesteps(1000, n("steps"), n("jump_length"), n("jump_n_sample")).unwrap();
        let want: Vec<usize> = serde_json::from_value(c["timesteps"].clone()).unwrap();
        assert_eq!(got, want, "{c:?}");
    }
}

#[test]
fn repaint_run_matches_diffusers_step_by_step() {
    let sched = schedule();
    for run in reference()["repaint_runs"].as_array().unwrap() {
        let eta = run["eta"].as_f64().unwrap();
        let config = SamplerConfig {
            eta,
            ..SamplerConfig::new(SamplerKind::Ddim, 10)
        };
        let timesteps = repaint_timesteps(1000, 10, 3, 2).unwrap();
        let mut keep = vec![0f32; 16];
        keep[..8].fill(1.0);
        let known = Known {
            image: closed_form(|i| 0.8 * (0.21 * i).cos()),
            keep: Tensor::from_vec(keep, (1, 1, 4, 4), &Device::Cpu).unwrap(),
        };
        let mut k = 0;
        let draw = || {
            let kk = k as f64;
            k += 1;
            Ok(closed_form(|i| (0.7 * kk + 0.13 * i + 0.5).sin()))
        };
        let states = run["states"].as_array().unwrap();
        let mut seen = 0;
        let mut repaint = RePaint::new(&sched, config, timesteps, known);
        repaint
            .run(fake_model, x_init(), draw, |e| {
                assert_close(
                    e.x,
                    &states[e.i],
                    &format!("eta {eta} state {} t={}", e.i, e.t),
                );
                seen += 1;
            })
            .unwrap();
        assert_eq!(seen, states.len());
    }
}

#[test]
fn ddim_inversion_matches_diffusers_step_by_step() {
    let sched = schedule();
    for case in reference()["ddim_inverse"].as_array().unwrap() {
        let spacing: TimestepSpacing = case["spacing"].as_str().unwrap().parse().unwrap();
        let config = SamplerConfig {
            clip_sample: false,
            timestep_spacing: spacing,
            ..SamplerConfig::new(SamplerKind::Ddim, 10)
        };
        let steps = case["steps"].as_array().unwrap();
        let mut seen = 0;
        ddim_invert(fake_model, &sched, &config, &x_init(), 0, |e| {
            assert_eq!(e.t as u64, steps[e.i]["t"].as_u64().unwrap());
            assert_close(e.x, &steps[e.i]["x"], &format!("{spacing:?} step {}", e.i));
            seen += 1;
        })
        .unwrap();
        assert_eq!(seen, 10);
    }
}

#[test]
fn inversion_then_ddim_returns_to_the_picture_for_a_smooth_model() {
    // With a model whose output hardly changes between neighbouring timesteps, inverting and
    // sampling again is nearly exact; the round trip is what `diffuse invert` reports.
    let sched = schedule();
    let config = SamplerConfig {
        clip_sample: false,
        ..SamplerConfig::new(SamplerKind::Ddim, 50)
    };
    let model = |x: &Tensor, t: usize| -> diffuse::Result<Tensor> {
        Ok((x.affine(0.05, 0.0)? + closed_form(|i| 0.1 * (0.001 * t as f64 + 0.3 * i).cos()))?)
    };
    let picture = closed_form(|i| 0.8 * (0.21 * i).cos());
    let noise = ddim_invert(model, &sched, &config, &picture, 0, |_| {}).unwrap();
    let mut sampler = diffuse::sampler::build(&config, &sched).unwrap();
    let mut rng = diffuse::rng::rng(0);
    let back = diffuse::pipeline::denoise_with(model, sampler.as_mut(), &mut rng, 0, noise, |_| {})
        .unwrap();
    let db = psnr(&back, &picture).unwrap();
    assert!(db > 35.0, "round trip PSNR {db:.1} dB"); // measured 39.3
    assert!(psnr(&picture, &picture).unwrap().is_infinite());
}

#[test]
fn only_deterministic_ddim_inverts() {
    let msg = |c: SamplerConfig| check_invertible(&c).unwrap_err().to_string();
    assert!(msg(SamplerConfig::new(SamplerKind::Ddpm, 10))
        .contains("--sampler ddpm cannot be inverted"));
    assert!(
        msg(SamplerConfig::new(SamplerKind::DpmSolverPP2M, 10)).contains("only deterministic DDIM")
    );
    let eta = SamplerConfig {
        eta: 0.5,
        ..SamplerConfig::new(SamplerKind::Ddim, 10)
    };
    assert!(msg(eta).contains("--eta 0.5"));
    assert!(check_invertible(&SamplerConfig::new(SamplerKind::Ddim, 10)).is_ok());
}

#[test]
fn slerp_is_exact_at_the_ends_and_keeps_the_norm_between() {
    let a = x_init();
    let b = closed_form(|i| (1.1 * i + 0.4).cos() * 1.3);
    assert_eq!(
        common::to_vec(&slerp(&a, &b, 0.0).unwrap()),
        common::to_vec(&a)
    );
    assert_eq!(
        common::to_vec(&slerp(&a, &b, 1.0).unwrap()),
        common::to_vec(&b)
    );
    let norm = |t: &Tensor| {
        common::to_vec(t)
            .iter()
            .map(|v| (v * v) as f64)
            .sum::<f64>()
            .sqrt()
    };
    let (na, nb) = (norm(&a), norm(&b));
    let mid = norm(&slerp(&a, &b, 0.5).unwrap());
    // Between two vectors of similar norm, slerp stays near that norm; a straight line dips.
    let lerp = norm(&(a.affine(0.5, 0.0).unwrap() + b.affine(0.5, 0.0).unwrap()).unwrap());
    assert!(
        (mid - (na + nb) / 2.0).abs() < 0.05 * na,
        "{mid} vs {na} {nb}"
    );
    assert!(lerp < 0.85 * mid, "{lerp} vs {mid}");
    assert_eq!(weights(5), vec![0.0, 0.25, 0.5, 0.75, 1.0]);
}

#[test]
fn repaint_refuses_zero_jumps() {
    let e = repaint_timesteps(1000, 10, 0, 10).unwrap_err().to_string();
    assert_eq!(e, "--jump-length 0: must be at least 1");
    let e = repaint_timesteps(1000, 10, 10, 0).unwrap_err().to_string();
    assert_eq!(e, "--jump-n-sample 0: must be at least 1");
}

#[test]
fn ddim_invert_step_undoes_a_ddim_step_for_a_constant_model() {
    // With ε independent of x and t, inversion is exact: one step up, then one step down.
    let sched = schedule();
    let config = SamplerConfig {
        clip_sample: false,
        ..SamplerConfig::new(SamplerKind::Ddim, 10)
    };
    let eps = closed_form(|i| (0.5 * i).sin());
    let x = x_init();
    let (up, _) = ddim::invert_step(&sched, &config, &eps, 900, &x).unwrap(); // from t=800 to 900
    let mut d = ddim::Ddim::new(&sched, &config);
    let (down, _) = diffuse::sampler::Sampler::step(&mut d, &eps, 0, &up, &x).unwrap();
    assert!(common::max_abs_diff(&down, &x) < 1e-5);
}
