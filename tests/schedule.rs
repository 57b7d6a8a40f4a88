//! Noise schedules against diffusers, and the statistics of forward diffusion.

use candle_core::{Device, Tensor};
use diffuse::forward::{self, NoiseMode};
use diffuse::rng;
use diffuse::schedule::{BetaSchedule, NoiseSchedule, ScheduleConfig};

/// `tests/data/diffusers_schedules.json` comes from diffusers 0.42.0 (torch 2.15.0):
/// `tests/reference/gen_schedules.py` says exactly how. It holds every index of every case.
const REFERENCE: &str = include_str!("data/diffusers_schedules.json");

#[test]
fn every_index_of_every_schedule_matches_diffusers() {
    let reference: serde_json::Value = serde_json::from_str(REFERENCE).unwrap();
    let cases = reference["cases"].as_array().unwrap();
    assert_eq!(cases.len(), 8);
    let mut seen = std::collections::HashSet::new();
    for case in cases {
        let name = case["beta_schedule"].as_str().unwrap();
        let config = ScheduleConfig {
            beta_schedule: name.parse().unwrap(),
            train_timesteps: case["train_timesteps"].as_u64().unwrap() as usize,
            beta_start: case["beta_start"].as_f64().unwrap(),
            beta_end: case["beta_end"].as_f64().unwrap(),
        };
        seen.insert(config.beta_schedule);
        let s = NoiseSchedule::new(config).unwrap();
        for (key, ours) in [("betas", &s.betas), ("alphas_cumprod", &s.alphas_cumprod)] {
            let theirs: Vec<f64> = case[key]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_f64().unwrap())
                .collect();
            assert_eq!(ours.len(), theirs.len(), "{name} {key} length");
            for (t, (a, b)) in ours.iter().zip(&theirs).enumerate() {
                assert!(
                    (a - b).abs() <= 1e-6,
                    "{name} T={} {key}[{t}]: ours {a} diffusers {b}",
                    config.train_timesteps
                );
            }
        }
    }
    assert_eq!(seen.len(), 4, "all four schedules are covered");
}

#[test]
fn spot_values_at_first_middle_and_last_index() {
    // Read off the same reference file, written out so a reader sees the numbers.
    let s = NoiseSchedule::new(ScheduleConfig::default()).unwrap();
    assert!((s.betas[0] - 1e-4).abs() < 1e-12);
    assert!((s.betas[999] - 0.02).abs() < 1e-12);
    assert!((s.alphas_cumprod[0] - 0.9999).abs() < 1e-9);
    assert!((s.alphas_cumprod[500] - 0.077_796_65).abs() < 1e-6);
    assert!((s.alphas_cumprod[999] - 4.035_83e-5).abs() < 1e-6);
    let cos = NoiseSchedule::new(ScheduleConfig {
        beta_schedule: BetaSchedule::Cosine,
        ..Default::default()
    })
    .unwrap();
    // The cosine schedule caps the last β at 0.999 (float division, unlike candle-transformers).
    assert!((cos.betas[999] - 0.999).abs() < 1e-12, "cap");
    assert!((cos.alphas_cumprod[0] - 0.999_958_9).abs() < 1e-6);
}

#[test]
fn alphas_cumprod_is_strictly_decreasing_in_every_schedule() {
    for kind in BetaSchedule::ALL {
        let s = NoiseSchedule::new(ScheduleConfig {
            beta_schedule: kind,
            ..Default::default()
        })
        .unwrap();
        assert!(s.alphas_cumprod[0] < 1.0 && s.alphas_cumprod[0] > 0.99);
        for w in s.alphas_cumprod.windows(2) {
            assert!(w[1] < w[0], "{kind}: alphas_cumprod must decrease");
        }
        for t in 0..s.len() - 1 {
            assert!(s.snr(t + 1) < s.snr(t), "{kind}: SNR must decrease");
            let expect = s.alphas_cumprod[t] / (1.0 - s.alphas_cumprod[t]);
            assert!((s.snr(t) - expect).abs() <= 1e-12 * expect.max(1.0));
        }
    }
}

#[test]
fn bad_configs_are_rejected_with_the_flag_named() {
    let err = |c: ScheduleConfig| NoiseSchedule::new(c).unwrap_err().to_string();
    let base = ScheduleConfig::default();
    assert!(err(ScheduleConfig {
        beta_start: 0.02,
        beta_end: 0.01,
        ..base
    })
    .contains("--beta-start 0.02 must be smaller than --beta-end 0.01"));
    assert!(err(ScheduleConfig {
        beta_end: 1.5,
        ..base
    })
    .contains("--beta-end 1.5 is outside (0, 1)"));
    assert!(err(ScheduleConfig {
        beta_start: 0.0,
        ..base
    })
    .contains("--beta-start 0 is outside (0, 1)"));
    assert!(err(ScheduleConfig {
        train_timesteps: 0,
        ..base
    })
    .contains("--train-timesteps 0"));
    assert!("foo"
        .parse::<BetaSchedule>()
        .unwrap_err()
        .to_string()
        .contains("unknown beta schedule 'foo'"));
    assert_eq!(
        "squaredcos_cap_v2".parse::<BetaSchedule>().unwrap(),
        BetaSchedule::Cosine
    );
}

fn mean_std(v: &[f32]) -> (f64, f64) {
    let n = v.len() as f64;
    let mean = v.iter().map(|&x| x as f64).sum::<f64>() / n;
    let var = v.iter().map(|&x| (x as f64 - mean).powi(2)).sum::<f64>() / n;
    (mean, var.sqrt())
}

#[test]
fn q_sample_moments_match_sqrt_alphabar_and_sqrt_one_minus_alphabar() {
    let s = NoiseSchedule::new(ScheduleConfig::default()).unwrap();
    let dev = Device::Cpu;
    let n = 200_000;
    let ts = [0usize, 250, 500, 999];
    let x0 = Tensor::ones((ts.len(), n), candle_core::DType::F32, &dev).unwrap(); // [4, n]
    let mut r = rng::rng(7);
    let noise = rng::randn(&mut r, (ts.len(), n), &dev).unwrap(); // [4, n]
    let xt = s.q_sample(&x0, &ts, &noise).unwrap();
    assert_eq!(xt.dims(), &[4, n]);
    for (i, &t) in ts.iter().enumerate() {
        let row: Vec<f32> = xt.get(i).unwrap().to_vec1().unwrap();
        let (mean, std) = mean_std(&row);
        let a = s.alphas_cumprod[t];
        assert!(
            (mean - a.sqrt()).abs() < 0.01,
            "t={t}: mean {mean} vs {}",
            a.sqrt()
        );
        assert!(
            (std - (1.0 - a).sqrt()).abs() < 0.01 * (1.0 - a).sqrt() + 1e-3,
            "t={t}: std {std} vs {}",
            (1.0 - a).sqrt()
        );
    }
}

#[test]
fn q_sample_uses_each_samples_own_timestep_exactly() {
    let s = NoiseSchedule::new(ScheduleConfig::default()).unwrap();
    let dev = Device::Cpu;
    let mut r = rng::rng(1);
    let x0 = rng::randn(&mut r, (3, 2, 4, 4), &dev).unwrap();
    let noise = rng::randn(&mut r, (3, 2, 4, 4), &dev).unwrap();
    let ts = [10usize, 999, 0];
    let xt = s.q_sample(&x0, &ts, &noise).unwrap(); // [3, 2, 4, 4]
    for (i, &t) in ts.iter().enumerate() {
        let a = s.alphas_cumprod[t];
        let x0i: Vec<f32> = x0.get(i).unwrap().flatten_all().unwrap().to_vec1().unwrap();
        let ni: Vec<f32> = noise
            .get(i)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        let xi: Vec<f32> = xt.get(i).unwrap().flatten_all().unwrap().to_vec1().unwrap();
        for k in 0..xi.len() {
            let want = a.sqrt() * x0i[k] as f64 + (1.0 - a).sqrt() * ni[k] as f64;
            assert!((xi[k] as f64 - want).abs() < 1e-5, "sample {i} t={t}");
        }
    }
    let err = s.q_sample(&x0, &[1, 2], &noise).unwrap_err().to_string();
    assert!(err.contains("2 timesteps for a batch of 3"), "{err}");
    let err = s
        .q_sample(&x0, &[1, 2, 1000], &noise)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("timestep 1000 is out of range 0..=999"),
        "{err}"
    );
}

#[test]
fn markov_chain_reaches_the_closed_form_marginal() {
    // x0 = 0.8 everywhere: x_t should have mean √ᾱ_t·0.8 and variance 1-ᾱ_t.
    let s = NoiseSchedule::new(ScheduleConfig::default()).unwrap();
    let dev = Device::Cpu;
    let x0 = Tensor::full(0.8f32, (3, 128, 128), &dev).unwrap();
    let ts = [50usize, 300, 700];
    let mut r = rng::rng(3);
    let traj = forward::diffuse(&s, &x0, &ts, NoiseMode::Markov, &mut r, |_, _| {}).unwrap();
    assert_eq!(traj.x_t.len(), 3);
    assert_eq!(traj.timesteps, ts);
    for (x, &t) in traj.x_t.iter().zip(&ts) {
        let v: Vec<f32> = x.flatten_all().unwrap().to_vec1().unwrap();
        let (mean, std) = mean_std(&v);
        let a = s.alphas_cumprod[t];
        let var = std * std;
        assert!((mean - 0.8 * a.sqrt()).abs() < 0.02, "t={t}: mean {mean}");
        assert!(
            (var - (1.0 - a)).abs() < 0.03 * (1.0 - a) + 1e-4,
            "t={t}: var {var} vs {}",
            1.0 - a
        );
    }
}

#[test]
fn shared_noise_frames_all_use_one_draw() {
    let s = NoiseSchedule::new(ScheduleConfig::default()).unwrap();
    let dev = Device::Cpu;
    let mut r = rng::rng(5);
    let x0 = rng::randn(&mut r, (3, 8, 8), &dev).unwrap();
    let ts = [0usize, 400, 999];
    let traj = forward::diffuse(&s, &x0, &ts, NoiseMode::Shared, &mut r, |_, _| {}).unwrap();
    let eps: Vec<f32> = traj.noise.flatten_all().unwrap().to_vec1().unwrap();
    let x0v: Vec<f32> = x0.flatten_all().unwrap().to_vec1().unwrap();
    for (x, &t) in traj.x_t.iter().zip(&ts) {
        let a = s.alphas_cumprod[t];
        let xv: Vec<f32> = x.flatten_all().unwrap().to_vec1().unwrap();
        for k in 0..xv.len() {
            let want = a.sqrt() * x0v[k] as f64 + (1.0 - a).sqrt() * eps[k] as f64;
            assert!((xv[k] as f64 - want).abs() < 1e-5);
        }
    }
}

#[test]
fn frame_timesteps_are_evenly_spaced_and_checked() {
    assert_eq!(
        forward::evenly_spaced_timesteps(5, 1000).unwrap(),
        vec![0, 250, 500, 749, 999]
    );
    assert_eq!(forward::evenly_spaced_timesteps(1, 1000).unwrap(), vec![0]);
    assert_eq!(
        forward::evenly_spaced_timesteps(10, 10).unwrap(),
        (0..10).collect::<Vec<_>>()
    );
    assert!(forward::evenly_spaced_timesteps(0, 1000)
        .unwrap_err()
        .to_string()
        .contains("--frames 0"));
    assert!(forward::evenly_spaced_timesteps(11, 10).is_err());
    let s = NoiseSchedule::new(ScheduleConfig::default()).unwrap();
    assert_eq!(
        forward::checked_timesteps(&s, &[250, 0, 250, 999]).unwrap(),
        vec![0, 250, 999]
    );
    assert!(forward::checked_timesteps(&s, &[-1])
        .unwrap_err()
        .to_string()
        .contains("timestep -1 is out of range"));
}
