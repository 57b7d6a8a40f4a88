//! `diffuse generate` end to end with the built-in model: outputs, determinism, errors.

mod common;
use common::{assert_fails_with, diffuse, run_json, s};

use std::path::Path;
use std::process::Output;

/// Three steps of "a red circle" with the shapes model (unless `extra` names another).
fn generate(out: &Path, seed: &str, extra: &[&str]) -> Output {
    let mut a = vec!["generate"];
    if !extra.contains(&"--model") {
        a.extend(["--model", "shapes32"]);
    }
    a.extend([
        "--prompt",
        "a red circle",
        "--steps",
        "3",
        "--num-images",
        "2",
        "--seed",
        seed,
        "--out",
        s(out),
        "--quiet",
    ]);
    a.extend_from_slice(extra);
    diffuse(&a)
}

fn read_all(dir: &Path) -> Vec<Vec<u8>> {
    let mut names: Vec<_> = std::fs::read_dir(dir.join("frames"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    names.sort();
    for f in [
        "sample_00.png",
        "sample_01.png",
        "grid.png",
        "strip.png",
        "denoising.gif",
    ] {
        names.push(dir.join(f));
    }
    names.iter().map(|p| std::fs::read(p).unwrap()).collect()
}

#[test]
fn generate_writes_every_output() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("g");
    let o = generate(&out, "5", &["--save-tensors", "--sampler", "ddim"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    // The initial noise plus one frame per step.
    assert_eq!(std::fs::read_dir(out.join("frames")).unwrap().count(), 4);
    let sample = image::open(out.join("sample_00.png")).unwrap();
    assert_eq!((sample.width(), sample.height()), (32, 32));
    let frame = image::open(out.join("frames/frame_0000.png")).unwrap();
    assert!(
        frame.width() >= 256,
        "frames are upscaled to at least 256 px"
    );
    let mut dec = gif::DecodeOptions::new()
        .read_info(std::fs::File::open(out.join("denoising.gif")).unwrap())
        .unwrap();
    let mut n = 0;
    while dec.read_next_frame().unwrap().is_some() {
        n += 1;
    }
    assert_eq!(n, 4);
    let run = run_json(&out);
    assert_eq!(run["seed"], 5);
    assert_eq!(run["sampler"]["kind"], "ddim");
    assert_eq!(run["timesteps"], serde_json::json!([666, 333, 0]));
    assert_eq!(run["condition_ids"], serde_json::json!([0, 0]));
    assert_eq!(run["model_sha256"].as_str().unwrap().len(), 64);
    let t = candle_core::safetensors::load(
        out.join("trajectory.safetensors"),
        &candle_core::Device::Cpu,
    )
    .unwrap();
    assert_eq!(t["x_t"].dims(), &[3, 2, 3, 32, 32]);
    assert_eq!(t["x0_pred"].dims(), &[3, 2, 3, 32, 32]);
}

#[test]
fn same_seed_same_bytes_other_seed_other_images() {
    let dir = tempfile::tempdir().unwrap();
    let a = read_all(&{
        let p = dir.path().join("a");
        assert!(generate(&p, "11", &[]).status.success());
        p
    });
    let b = read_all(&{
        let p = dir.path().join("b");
        assert!(generate(&p, "11", &[]).status.success());
        p
    });
    let c = read_all(&{
        let p = dir.path().join("c");
        assert!(generate(&p, "12", &[]).status.success());
        p
    });
    assert_eq!(a, b);
    assert_ne!(
        a[a.len() - 5],
        c[c.len() - 5],
        "another seed gives another sample"
    );
}

#[test]
fn generate_errors_are_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("e");
    let o = diffuse(&[
        "generate",
        "--model",
        "shapes32",
        "--prompt",
        "a mauve circle",
        "--out",
        s(&out),
    ]);
    assert_fails_with(&o, "unknown word 'mauve'");
    assert_fails_with(&o, "colour: red, orange");
    let steps = |n: &str| {
        diffuse(&[
            "generate",
            "--model",
            "shapes32",
            "--prompt",
            "red",
            "--steps",
            n,
            "--out",
            s(&out),
        ])
    };
    assert_fails_with(&steps("0"), "--steps 0");
    assert_fails_with(&steps("1001"), "--steps 1001 is out of range");
    assert_fails_with(
        &generate(&out, "1", &["--sampler", "ddim", "--eta", "-1"]),
        "--eta -1",
    );
    assert_fails_with(&generate(&out, "1", &["--guidance", "-2"]), "--guidance -2");
    assert_fails_with(
        &generate(&out, "1", &["--guidance", "NaN"]),
        "--guidance NaN",
    );
    assert_fails_with(
        &diffuse(&[
            "generate",
            "--model",
            "shapes32",
            "--prompt",
            "red",
            "--num-images",
            "0",
            "--out",
            s(&out),
        ]),
        "--num-images 0",
    );
    assert_fails_with(
        &generate(&out, "1", &["--model", "nope.safetensors"]),
        "nope.safetensors",
    );
    let junk = dir.path().join("junk.safetensors");
    std::fs::write(&junk, b"junk").unwrap();
    assert_fails_with(
        &generate(&out, "1", &["--model", s(&junk)]),
        "not a valid safetensors file",
    );
    assert_fails_with(
        &generate(&out, "1", &["--device", "cuda"]),
        "this build has no CUDA support",
    );
    assert_fails_with(
        &diffuse(&[
            "generate",
            "--model",
            "shapes32",
            "--prompt",
            "red blue",
            "--out",
            s(&out),
        ]),
        "names two colour words",
    );
    assert!(!out.exists(), "failed runs write nothing");
}

#[test]
fn img2img_starts_part_way_with_diffusers_semantics() {
    let dir = tempfile::tempdir().unwrap();
    let pic = dir.path().join("in.png");
    image::RgbImage::from_pixel(50, 40, image::Rgb([200, 40, 40]))
        .save(&pic)
        .unwrap();
    let out = dir.path().join("i");
    let o = diffuse(&[
        "img2img",
        "--model",
        "shapes32",
        "--image",
        s(&pic),
        "--prompt",
        "red",
        "--strength",
        "0.5",
        "--steps",
        "10",
        "--sampler",
        "ddim",
        "--num-images",
        "1",
        "--seed",
        "3",
        "--out",
        s(&out),
        "--quiet",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let run = run_json(&out);
    // init = min(int(10·0.5), 10) = 5 steps, from timesteps[5] of DDIM-leading [900 … 0].
    assert_eq!(run["timesteps"], serde_json::json!([400, 300, 200, 100, 0]));
    // input, noised input, then one frame per step.
    assert_eq!(std::fs::read_dir(out.join("frames")).unwrap().count(), 7);
    assert_eq!(image::open(out.join("sample_00.png")).unwrap().width(), 32);

    let bad = |strength: &str| {
        diffuse(&[
            "img2img",
            "--model",
            "shapes32",
            "--image",
            s(&pic),
            "--prompt",
            "red",
            "--strength",
            strength,
            "--out",
            s(&dir.path().join("x")),
        ])
    };
    assert_fails_with(&bad("1.5"), "--strength 1.5 is outside [0, 1]");
    assert_fails_with(&bad("-0.1"), "--strength -0.1 is outside [0, 1]");
    let o = diffuse(&[
        "img2img",
        "--model",
        "shapes32",
        "--image",
        s(&dir.path().join("none.png")),
        "--prompt",
        "red",
        "--out",
        s(&dir.path().join("y")),
    ]);
    assert_fails_with(&o, "none.png");
}

#[test]
fn a_non_empty_out_needs_force_and_keeps_the_users_files() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("mine");
    std::fs::create_dir_all(&out).unwrap();
    std::fs::write(out.join("notes.txt"), b"keep me").unwrap();
    assert_fails_with(&generate(&out, "1", &[]), "--force");
    assert_eq!(std::fs::read(out.join("notes.txt")).unwrap(), b"keep me");
    assert!(
        !out.join("grid.png").exists(),
        "a refused run writes nothing"
    );
    let o = generate(&out, "1", &["--force"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(out.join("grid.png").exists());
}

#[test]
fn dpm_solver_takes_a_single_step() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("one");
    let o = diffuse(&[
        "generate",
        "--model",
        "shapes32",
        "--prompt",
        "red",
        "--sampler",
        "dpm++2m",
        "--steps",
        "1",
        "--num-images",
        "1",
        "--seed",
        "0",
        "--out",
        s(&out),
        "--quiet",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let run = run_json(&out);
    assert_eq!(run["timesteps"], serde_json::json!([999]));
}

#[test]
fn threads_flag_is_checked_and_one_thread_is_deterministic() {
    let dir = tempfile::tempdir().unwrap();
    assert_fails_with(
        &generate(&dir.path().join("z"), "1", &["--threads", "0"]),
        "--threads 0",
    );
    let a = dir.path().join("a");
    let b = dir.path().join("b");
    assert!(generate(&a, "4", &["--threads", "1"]).status.success());
    assert!(generate(&b, "4", &["--threads", "1"]).status.success());
    assert_eq!(read_all(&a), read_all(&b));
    assert_eq!(run_json(&a)["threads"], 1);
}
