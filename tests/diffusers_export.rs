//! `diffuse export --diffusers`: the shipped model written as a diffusers folder loads with
//! every weight used and gives the same outputs as diffuse's own network. (diffusers itself:
//! `tests/reference/check_export.py` loads the folder with `UNet2DModel.from_pretrained`.)

mod common;

use std::path::Path;

use candle_core::{Device, Tensor};

#[test]
fn the_shapes_model_exports_to_a_unet2d_with_the_same_outputs() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("shapes32-diffusers");
    let o = common::diffuse(&[
        "export",
        "--diffusers",
        common::s(&out),
        "--model",
        "shapes32",
        "--json",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let config: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(config["num_class_embeds"], 49);
    assert_eq!(
        config["down_block_types"],
        serde_json::json!(["DownBlock2D", "DownBlock2D", "AttnDownBlock2D"])
    );
    let cpu = Device::Cpu;
    let own = diffuse::model::load(Some(Path::new("shapes32")), &cpu).unwrap();
    let exported = diffuse::model::load(Some(&out), &cpu).unwrap(); // checks every weight is used
    let x = Tensor::randn(0f32, 1.0, (3, 3, 32, 32), &cpu).unwrap();
    let t = [999.0, 500.0, 3.0];
    // Colour c, shape s (6 = none) is class 7c + s.
    let slots = Tensor::from_vec(vec![0u32, 0, 4, 5, 6, 6], (3, 2), &cpu).unwrap();
    let classes = Tensor::from_vec(vec![0u32, 33, 48], (3, 1), &cpu).unwrap();
    let (a, b) = (own.net.denoiser(), exported.net.denoiser());
    let ya = a
        .forward_conditioned(&x, &t, &a.condition(&slots).unwrap())
        .unwrap();
    let yb = b
        .forward_conditioned(&x, &t, &b.condition(&classes).unwrap())
        .unwrap();
    let err = common::max_abs_diff(&ya, &yb);
    assert!(err < 1e-4, "max |own - exported| = {err}");
    assert_eq!(exported.meta.schedule, own.meta.schedule);
    // The folder is not overwritten without --force.
    let again = common::diffuse(&[
        "export",
        "--diffusers",
        common::s(&out),
        "--model",
        "shapes32",
    ]);
    common::assert_fails_with(&again, "--force");
}

/// diffusers' output for the exported shapes32 (written by `tests/reference/check_export.py`)
/// against diffuse's own network.
#[test]
#[ignore = "needs the output of tests/reference/check_export.py"]
fn diffusers_runs_the_exported_model_as_diffuse_does() {
    let path = std::env::var("DIFFUSE_EXPORT_IO").expect("set DIFFUSE_EXPORT_IO");
    let io = candle_core::safetensors::load(path, &Device::Cpu).unwrap();
    let own = diffuse::model::load(Some(Path::new("shapes32")), &Device::Cpu).unwrap();
    let labels: Vec<i64> = io["labels"].to_vec1().unwrap();
    let slots: Vec<u32> = labels
        .iter()
        .flat_map(|&l| [(l / 7) as u32, (l % 7) as u32])
        .collect();
    let ids = Tensor::from_vec(slots, (labels.len(), 2), &Device::Cpu).unwrap();
    let t: Vec<f64> = io["t"]
        .to_vec1::<f32>()
        .unwrap()
        .into_iter()
        .map(f64::from)
        .collect();
    let d = own.net.denoiser();
    let out = d
        .forward_conditioned(&io["x"], &t, &d.condition(&ids).unwrap())
        .unwrap();
    let err = common::max_abs_diff(&out, &io["out"]);
    println!("diffusers vs diffuse on the exported shapes32: {err:.2e}");
    assert!(err < 1e-4);
}

#[test]
fn a_text_model_is_not_exported_and_says_why() {
    let cfg = diffuse::unet::UNetConfig::emoji();
    let e = diffuse::diffusers::export::config_of(&cfg)
        .unwrap_err()
        .to_string();
    assert!(e.contains("cannot export to diffusers: a text model's prompts go through diffuse's own text encoder"), "{e}");
}
