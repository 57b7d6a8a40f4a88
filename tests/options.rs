//! Typed options and errors: options parse and print back, errors carry the option and value
//! as fields, caller input never panics, flag defaults come from the library, guidance inputs
//! live on the model's device, and the streaming frame writer makes the same bytes as
//! encoding at once.

mod common;

use candle_core::{DType, Device, Tensor};
use diffuse::error::{Error, Reason};
use diffuse::render::animation::{self, AnimationWriter, FrameCount};
use diffuse::schedule::{BetaSchedule, ScheduleChoice};
use diffuse::train::DataSource;
use diffuse::unet::Prediction;

#[test]
fn typed_options_round_trip_through_their_flag_text() {
    for s in ["all", "1", "17"] {
        assert_eq!(s.parse::<FrameCount>().unwrap().to_string(), s);
    }
    assert_eq!("7".parse::<FrameCount>().unwrap(), FrameCount::Count(7));
    let e = "0".parse::<FrameCount>().unwrap_err().to_string();
    assert_eq!(e, "--frames 0: at least one frame is needed");
    let e = "most".parse::<FrameCount>().unwrap_err().to_string();
    assert_eq!(e, "--frames 'most' is neither 'all' nor a number");

    assert_eq!(
        "all".parse::<ScheduleChoice>().unwrap().schedules(),
        BetaSchedule::ALL
    );
    let one = "squaredcos_cap_v2".parse::<ScheduleChoice>().unwrap();
    assert_eq!(one, ScheduleChoice::One(BetaSchedule::Cosine));
    assert_eq!(one.to_string(), "cosine");

    assert_eq!("shapes".parse::<DataSource>().unwrap(), DataSource::Shapes);
    let folder = "./shapes".parse::<DataSource>().unwrap();
    assert_eq!(folder, DataSource::Folder("./shapes".into()));
    assert_eq!(folder.to_string(), "./shapes");
    assert!("".parse::<DataSource>().is_err());

    for p in [Prediction::Epsilon, Prediction::VPrediction] {
        assert_eq!(p.to_string().parse::<Prediction>().unwrap(), p);
    }
    let e = "sample".parse::<Prediction>().unwrap_err().to_string();
    assert_eq!(
        e,
        "unknown prediction type 'sample' (expected one of: epsilon, v_prediction)"
    );
}

#[test]
fn option_errors_name_the_option_and_value_as_fields() {
    let schedule = diffuse::schedule::NoiseSchedule::new(Default::default()).unwrap();
    let config = diffuse::sampler::SamplerConfig::new(diffuse::sampler::SamplerKind::Ddim, 0);
    let Err(err) = diffuse::sampler::build(&config, &schedule) else {
        panic!("0 steps must be refused");
    };
    match &err {
        Error::Option {
            option,
            value,
            reason: Reason::Is(why),
        } => {
            assert_eq!((*option, value.as_str()), ("steps", "0"));
            assert!(why.starts_with("is out of range 1..=1000"), "{why}");
        }
        other => panic!("expected Error::Option, got {other:?}"),
    }
    assert!(err
        .to_string()
        .starts_with("--steps 0 is out of range 1..=1000"));
}

#[test]
fn caller_input_that_used_to_panic_is_an_error_or_a_verdict() {
    // The judge on pictures too small to have a border and an inside.
    for (w, h) in [(0, 0), (1, 5), (2, 2)] {
        let v = diffuse::judge::judge(&image::RgbImage::new(w, h));
        assert_eq!((v.colour, v.shape), (None, None), "{w}x{h}");
    }
    // Forward diffusion with no timesteps.
    let schedule = diffuse::schedule::NoiseSchedule::new(Default::default()).unwrap();
    let x0 = Tensor::zeros((3, 4, 4), DType::F32, &Device::Cpu).unwrap();
    let mut rng = diffuse::rng::rng(0);
    for mode in [
        diffuse::forward::NoiseMode::Shared,
        diffuse::forward::NoiseMode::Markov,
    ] {
        let r = diffuse::forward::diffuse(&schedule, &x0, &[], mode, &mut rng, |_, _| {});
        let e = r.err().expect("no timesteps is an error").to_string();
        assert_eq!(e, "--timesteps '': the list is empty");
    }
    // The judge's self-test at a noise level that is not a number.
    let e = diffuse::jobs::eval::self_test(4, 1, &[f64::NAN]).unwrap_err();
    assert!(e.to_string().contains("--sigma NaN"), "{e}");
    // A timing with no samples.
    let t = diffuse::bench::Timing::from_samples(Vec::new());
    assert_eq!(t.median_ms, 0.0);
}

#[test]
fn guidance_builds_its_condition_tensors_on_the_models_device() {
    // Regression for the training preview, which built its condition on the CPU whatever the
    // model's device: Guided::new takes the device from the model, so the two always agree.
    // (Only a CUDA or Metal machine can show the old failure; on CI this checks the wiring.)
    let varmap = candle_nn::VarMap::new();
    let vb = diffuse::nn::init::SeededInit::var_builder(&varmap, 0, &Device::Cpu);
    let unet = diffuse::unet::UNet::new(&common::tiny_unet(), vb).unwrap();
    let ids = vec![vec![0, 1], vec![2, 3]];
    let nulls = vec![vec![6, 6]; 2];
    let guided = diffuse::pipeline::Guided::new(&unet, 3.0, &ids, &nulls).unwrap();
    let mut rng = diffuse::rng::rng(0);
    let x = diffuse::pipeline::initial_noise(&guided, &mut rng).unwrap();
    assert!(x.device().same_device(unet.device()));
    assert_eq!(x.dims(), &[2, 3, 32, 32]);
    let eps = guided.predict(&x, 500).unwrap();
    assert!(eps.device().same_device(unet.device()));
    assert_eq!(eps.dims(), x.dims());
}

/// `n` distinct 24×16 frames.
fn frames(n: usize) -> Vec<image::RgbImage> {
    (0..n)
        .map(|i| {
            image::RgbImage::from_fn(24, 16, |x, y| {
                image::Rgb([(x * 10) as u8, (y * 15) as u8, (i * 7) as u8])
            })
        })
        .collect()
}

#[test]
fn the_streaming_writer_makes_the_same_bytes_as_encoding_all_frames_at_once() {
    let dir = tempfile::tempdir().unwrap();
    // More frames than one batch (two per thread), so batches meet in the middle.
    let n = 4 * rayon::current_num_threads() + 3;
    let all = frames(n);
    let mut w = AnimationWriter::new(dir.path(), "anim.gif", n, 12.0, false).unwrap();
    for (i, f) in all.iter().enumerate() {
        w.push(f.clone(), || format!("#{i}")).unwrap();
    }
    let written = w.finish().unwrap();
    let gif = std::fs::read(dir.path().join("anim.gif")).unwrap();
    assert_eq!(gif, animation::gif_bytes(&all, 12.0).unwrap());
    assert_eq!(written.files.len(), n + 2);
    assert_eq!(written.files[0], "frames/frame_0000.png");
    assert_eq!(written.files[n], "anim.gif");
    for (i, f) in all.iter().enumerate() {
        let path = dir.path().join("frames").join(animation::frame_name(i));
        assert_eq!(image::open(path).unwrap().to_rgb8(), *f);
    }
    assert!(dir.path().join("strip.png").exists());
    // No temporary file is left behind.
    let names: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(names.iter().all(|n| !n.contains(".tmp")), "{names:?}");
}

#[test]
fn the_writer_checks_its_inputs_before_writing_and_refuses_extra_frames() {
    let dir = tempfile::tempdir().unwrap();
    let e = AnimationWriter::new(dir.path(), "a.gif", 3, 0.0, false)
        .err()
        .unwrap();
    assert_eq!(e.to_string(), "--fps 0 is out of range (0, 100]");
    assert!(!dir.path().join("frames").exists(), "nothing is written");
    let mut w = AnimationWriter::new(dir.path(), "a.gif", 1, 10.0, false).unwrap();
    let f = frames(2);
    w.push(f[0].clone(), String::new).unwrap();
    assert!(w.push(f[1].clone(), String::new).is_err());
}

#[test]
fn force_removes_the_frames_of_an_earlier_longer_run() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let run = |frames: &str, force: bool| {
        let mut args = vec![
            "generate",
            "--model",
            "shapes32",
            "--prompt",
            "a red circle",
            "--seed",
            "1",
            "--steps",
            "6",
            "--num-images",
            "1",
            "--frames",
            frames,
            "--out",
            common::s(&out),
            "--quiet",
        ];
        if force {
            args.push("--force");
        }
        let o = common::diffuse(&args);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    };
    run("all", false);
    assert_eq!(std::fs::read_dir(out.join("frames")).unwrap().count(), 7);
    run("3", true);
    assert_eq!(std::fs::read_dir(out.join("frames")).unwrap().count(), 3);
    assert_eq!(common::run_json(&out)["frame_count"], 3);
}

#[test]
fn flag_defaults_come_from_the_library() {
    let help = common::diffuse(&["train", "--help"]);
    let text = String::from_utf8_lossy(&help.stdout);
    let lr = diffuse::train::TrainConfig::default().lr;
    assert!(text.contains(&format!("[default: {lr}]")), "{text}");
    let help = common::diffuse(&["generate", "--help"]);
    let text = String::from_utf8_lossy(&help.stdout);
    let steps = diffuse::defaults::SamplingDefaults::LIBRARY.steps;
    assert!(
        text.contains(&format!(
            "Denoising steps (1000 with DDPM is the full chain) [default: the model's; {steps} for the shipped models]"
        )),
        "{text}"
    );
}

#[test]
fn mode_flags_that_cannot_be_combined_are_refused() {
    let o = common::diffuse(&["eval", "--self-test", "--sweep", "x.png"]);
    common::assert_fails_with(&o, "--self-test");
    let o = common::diffuse(&[
        "noise",
        "--image",
        "a.png",
        "--out",
        "o",
        "--frames",
        "3",
        "--timesteps",
        "1,2",
    ]);
    common::assert_fails_with(&o, "cannot be used with");
}
