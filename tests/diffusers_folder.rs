//! Reading diffusers model folders: the flat and pipeline layouts, legacy attention names,
//! the scheduler config, and every broken folder refused with one line that names the
//! problem.

mod common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use diffuse::diffusers::load_folder;

fn plain() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/unet2d/plain")
}

/// A copy of the plain model's folder in `dir`, with its weights passed through `edit`.
fn copy_with(dir: &Path, edit: impl FnOnce(&mut HashMap<String, Tensor>)) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::copy(plain().join("config.json"), dir.join("config.json")).unwrap();
    let mut w = candle_core::safetensors::load(
        plain().join("diffusion_pytorch_model.safetensors"),
        &Device::Cpu,
    )
    .unwrap();
    edit(&mut w);
    candle_core::safetensors::save(&w, dir.join("diffusion_pytorch_model.safetensors")).unwrap();
    dir.to_path_buf()
}

fn output_error(dir: &Path) -> f32 {
    let model = load_folder(dir, &Device::Cpu).unwrap();
    let io = candle_core::safetensors::load(plain().join("io.safetensors"), &Device::Cpu).unwrap();
    let t: Vec<f64> = io["timesteps"]
        .to_vec1::<f32>()
        .unwrap()
        .into_iter()
        .map(f64::from)
        .collect();
    let out = model.unet.forward(&io["sample"], &t, None).unwrap();
    common::max_abs_diff(&out, &io["output"])
}

fn err(dir: &Path) -> String {
    match load_folder(dir, &Device::Cpu) {
        Ok(_) => panic!("{} loaded", dir.display()),
        Err(e) => e.to_string(),
    }
}

#[test]
fn flat_and_pipeline_folders_and_legacy_names_load() {
    assert!(output_error(&plain()) < 1e-4);
    let tmp = tempfile::tempdir().unwrap();
    // Pipeline layout: model_index.json, unet/, scheduler/.
    let pipe = tmp.path().join("pipe");
    copy_with(&pipe.join("unet"), |_| {});
    std::fs::write(
        pipe.join("model_index.json"),
        r#"{"_class_name": "DDPMPipeline"}"#,
    )
    .unwrap();
    std::fs::create_dir_all(pipe.join("scheduler")).unwrap();
    let sched = r#"{"_class_name": "DDPMScheduler", "beta_schedule": "squaredcos_cap_v2", "clip_sample": false, "prediction_type": "v_prediction", "num_train_timesteps": 500}"#;
    std::fs::write(pipe.join("scheduler/scheduler_config.json"), sched).unwrap();
    assert!(output_error(&pipe) < 1e-4);
    let model = load_folder(&pipe, &Device::Cpu).unwrap();
    let s = model.scheduler.unwrap();
    assert_eq!(s.schedule().unwrap().train_timesteps, 500);
    let cfg = s.sampler(diffuse::sampler::SamplerKind::Ddim, 10).unwrap();
    assert!(!cfg.clip_sample);
    assert_eq!(cfg.prediction, diffuse::unet::Prediction::VPrediction);
    // Legacy attention names.
    let legacy = copy_with(&tmp.path().join("legacy"), |w| {
        let names: Vec<String> = w.keys().cloned().collect();
        for n in names {
            let old = n
                .replace(".to_q.", ".query.")
                .replace(".to_k.", ".key.")
                .replace(".to_v.", ".value.")
                .replace(".to_out.0.", ".proj_attn.");
            let t = w.remove(&n).unwrap();
            w.insert(old, t);
        }
    });
    assert!(output_error(&legacy) < 1e-4);
}

#[test]
fn broken_folders_are_refused_by_name() {
    let tmp = tempfile::tempdir().unwrap();
    let empty = tmp.path().join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    assert!(
        err(&empty).contains("has no config.json"),
        "{}",
        err(&empty)
    );
    let bad_json = copy_with(&tmp.path().join("json"), |_| {});
    std::fs::write(bad_json.join("config.json"), "{ not json").unwrap();
    assert!(err(&bad_json).contains("config.json"), "{}", err(&bad_json));
    let block = copy_with(&tmp.path().join("block"), |_| {});
    let text = std::fs::read_to_string(block.join("config.json"))
        .unwrap()
        .replacen("\"AttnDownBlock2D\"", "\"CrossAttnDownBlock2D\"", 1);
    std::fs::write(block.join("config.json"), text).unwrap();
    assert!(
        err(&block).contains("down_block_types = CrossAttnDownBlock2D is not supported"),
        "{}",
        err(&block)
    );
    let missing = copy_with(&tmp.path().join("missing"), |w| {
        w.remove("conv_out.bias");
    });
    assert!(
        err(&missing).contains("weight conv_out.bias is missing"),
        "{}",
        err(&missing)
    );
    let extra = copy_with(&tmp.path().join("extra"), |w| {
        w.insert(
            "surplus.weight".into(),
            Tensor::zeros(3, DType::F32, &Device::Cpu).unwrap(),
        );
    });
    assert!(
        err(&extra).contains("weight surplus.weight is not used"),
        "{}",
        err(&extra)
    );
    let shape = copy_with(&tmp.path().join("shape"), |w| {
        w.insert(
            "conv_out.bias".into(),
            Tensor::zeros(4, DType::F32, &Device::Cpu).unwrap(),
        );
    });
    assert!(
        err(&shape).contains("weight conv_out.bias has shape [4], the config needs [3]"),
        "{}",
        err(&shape)
    );
    let pickle = tmp.path().join("pickle");
    std::fs::create_dir_all(&pickle).unwrap();
    std::fs::copy(plain().join("config.json"), pickle.join("config.json")).unwrap();
    std::fs::write(pickle.join("diffusion_pytorch_model.bin"), b"pickle").unwrap();
    assert!(
        err(&pickle).contains("holds only diffusion_pytorch_model.bin, a pickle"),
        "{}",
        err(&pickle)
    );
    let learned = copy_with(&tmp.path().join("learned"), |_| {});
    std::fs::write(
        learned.join("scheduler_config.json"),
        r#"{"variance_type": "learned_range"}"#,
    )
    .unwrap();
    assert!(
        err(&learned).contains("variance_type = learned_range is not supported"),
        "{}",
        err(&learned)
    );
    for e in [err(&empty), err(&missing), err(&learned)] {
        assert_eq!(e.lines().count(), 1, "{e}");
    }
}

#[test]
fn a_whole_ddim_run_matches_diffusers() {
    use diffuse::sampler::{SamplerConfig, SamplerKind};
    let model = diffuse::model::load(Some(&plain()), &Device::Cpu).unwrap();
    let run =
        candle_core::safetensors::load(plain().join("ddim.safetensors"), &Device::Cpu).unwrap();
    let guided = model
        .guided(1.0, &[vec![], vec![]], &[vec![], vec![]])
        .unwrap();
    let config = SamplerConfig {
        thresholding: false,
        ..SamplerConfig::new(SamplerKind::Ddim, 10)
    };
    let mut sampler = model.sampler(config).unwrap();
    let mut rng = diffuse::rng::rng(0);
    let x = diffuse::pipeline::denoise_with(
        |x, t| guided.predict(x, t),
        sampler.as_mut(),
        &mut rng,
        0,
        run["noise"].clone(),
        |_| {},
    )
    .unwrap();
    let err = common::max_abs_diff(&x, &run["sample"]);
    println!("DDIM run: max |diffuse - diffusers| = {err:.2e}");
    assert!(err < 1e-3, "{err}");
}

#[test]
fn generate_img2img_and_invert_run_a_diffusers_folder() {
    let tmp = tempfile::tempdir().unwrap();
    let s = common::s;
    let plain = plain();
    let out = tmp.path().join("g");
    let o = common::diffuse(&[
        "generate",
        "--model",
        s(&plain),
        "--prompt",
        "",
        "--steps",
        "3",
        "--sampler",
        "ddim",
        "--out",
        s(&out),
        "--quiet",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let img = image::open(out.join("sample_00.png")).unwrap();
    assert_eq!((img.width(), img.height()), (16, 16));
    assert_eq!(common::run_json(&out)["model"], s(&plain));
    let class = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/unet2d/scale_shift_class");
    let ok = common::diffuse(&[
        "generate",
        "--model",
        s(&class),
        "--prompt",
        "3",
        "--guidance",
        "1",
        "--steps",
        "2",
        "--out",
        s(&tmp.path().join("c")),
        "--quiet",
    ]);
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    let refused = tmp.path().join("refused");
    let o = common::diffuse(&[
        "generate",
        "--model",
        s(&class),
        "--prompt",
        "3",
        "--steps",
        "2",
        "--out",
        s(&refused),
    ]);
    common::assert_fails_with(
        &o,
        "needs a class number as the prompt (0..=4) and --guidance 1",
    );
    assert!(!refused.exists());
    let o = common::diffuse(&[
        "generate",
        "--model",
        s(&plain),
        "--prompt",
        "a cat",
        "--out",
        s(&refused),
    ]);
    common::assert_fails_with(&o, "this model is unconditional");
    let o = common::diffuse(&["bench", "--model", s(&plain), "--quick", "--json"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let r: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(r["rows"][1]["batch"], 16);
    assert_eq!(r["rows"][0]["timing"]["runs"], 3);
}

#[test]
fn the_folders_scheduler_options_apply() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = copy_with(&tmp.path().join("sched"), |_| {});
    let sched = r#"{"_class_name": "DDIMScheduler", "timestep_spacing": "trailing", "steps_offset": 1, "clip_sample": false, "thresholding": false}"#;
    std::fs::write(dir.join("scheduler_config.json"), sched).unwrap();
    let run = |name: &str, extra: &[&str]| {
        let out = tmp.path().join(name);
        let mut a = vec![
            "generate",
            "--model",
            common::s(&dir),
            "--prompt",
            "",
            "--steps",
            "4",
            "--sampler",
            "ddim",
            "--frames",
            "2",
            "--out",
            common::s(&out),
            "--quiet",
        ];
        a.extend_from_slice(extra);
        let o = common::diffuse(&a);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        common::run_json(&out)["sampler"].clone()
    };
    let s = run("folder", &[]);
    assert_eq!(s["timestep_spacing"], "trailing");
    assert_eq!(s["steps_offset"], 1);
    assert_eq!(s["clip_sample"], false);
    assert_eq!(s["thresholding"], false);
    // An explicit flag wins over the folder.
    assert_eq!(
        run("flag", &["--timestep-spacing", "linspace"])["timestep_spacing"],
        "linspace"
    );
}
