//! `diffuse inpaint`, `interpolate`, `invert` and `generate --from-noise/--start-step` end to
//! end with the built-in model: the kept region survives inpainting, the interpolation ends
//! are plain samples, the inversion round trip reaches its PSNR, runs are deterministic, and
//! every bad input is one line and a non-zero exit.

mod common;
use common::{assert_fails_with, diffuse, run_json, s};

use std::path::{Path, PathBuf};

use image::{GrayImage, Luma, RgbImage};

/// Four shapes-dataset pictures (32 px) in `dir`, sorted.
fn dataset(dir: &Path) -> Vec<PathBuf> {
    dataset_of(dir, 4)
}

/// `count` shapes-dataset pictures (32 px, seed 7) in `dir`, sorted.
fn dataset_of(dir: &Path, count: usize) -> Vec<PathBuf> {
    let n = count.to_string();
    let o = diffuse(&[
        "data",
        "shapes",
        "--count",
        &n,
        "--out",
        s(dir),
        "--seed",
        "7",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "png") && !p.ends_with("preview.png"))
        .collect();
    files.sort();
    files
}

/// A `w`×`h` mask, white (repaint) where `white(x, y)`.
fn mask(path: &Path, (w, h): (u32, u32), white: impl Fn(u32, u32) -> bool) -> PathBuf {
    let img = GrayImage::from_fn(w, h, |x, y| Luma([if white(x, y) { 255 } else { 0 }]));
    img.save(path).unwrap();
    path.to_path_buf()
}

fn rgb(path: &Path) -> RgbImage {
    image::open(path).unwrap().to_rgb8()
}

fn ok(o: &std::process::Output) {
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}

fn inpaint(pic: &Path, mask: &Path, out: &Path, extra: &[&str]) -> std::process::Output {
    let mut a = vec![
        "inpaint",
        "--model",
        "shapes32",
        "--image",
        s(pic),
        "--mask",
        s(mask),
        "--prompt",
        "a blue square",
        "--steps",
        "10",
        "--seed",
        "3",
        "--num-images",
        "2",
        "--out",
        s(out),
        "--quiet",
    ];
    a.extend_from_slice(extra);
    diffuse(&a)
}

#[test]
fn inpainting_keeps_the_kept_region_and_repaints_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let pics = dataset(&dir.path().join("data"));
    let m = mask(&dir.path().join("mask.png"), (32, 32), |x, _| x >= 16);
    for (name, extra) in [
        ("replace", &[][..]),
        (
            "repaint",
            &[
                "--method",
                "repaint",
                "--jump-length",
                "3",
                "--jump-n-sample",
                "2",
            ][..],
        ),
    ] {
        let out = dir.path().join(name);
        ok(&inpaint(&pics[0], &m, &out, extra));
        let input = rgb(&pics[0]);
        for k in ["sample_00.png", "sample_01.png"] {
            let got = rgb(&out.join(k));
            let (mut kept_err, mut changed) = (0u8, 0);
            for (x, y, p) in got.enumerate_pixels() {
                let q = input.get_pixel(x, y);
                let d = (0..3).map(|c| p.0[c].abs_diff(q.0[c])).max().unwrap();
                if x < 16 {
                    kept_err = kept_err.max(d);
                } else if d > 8 {
                    changed += 1;
                }
            }
            assert!(kept_err <= 1, "{name} {k}: kept region off by {kept_err}");
            assert!(changed > 0, "{name} {k}: nothing was repainted");
        }
        // The frames carry the mask's outline.
        let frame = rgb(&out.join("frames/frame_0000.png"));
        assert!(
            frame.pixels().any(|p| p.0 == [255, 214, 0]),
            "{name}: no outline"
        );
        let r = run_json(&out);
        assert_eq!(r["command"], "inpaint");
        assert_eq!(r["inpaint"]["method"], name);
        assert_eq!(r["repainted_share"], 0.5);
    }
}

#[test]
fn inpainting_is_deterministic() {
    let dir = tempfile::tempdir().unwrap();
    let pics = dataset(&dir.path().join("data"));
    let m = mask(&dir.path().join("mask.png"), (64, 64), |x, y| x + y > 64);
    let extra = [
        "--method",
        "repaint",
        "--jump-length",
        "2",
        "--jump-n-sample",
        "2",
    ];
    ok(&inpaint(&pics[1], &m, &dir.path().join("a"), &extra));
    ok(&inpaint(&pics[1], &m, &dir.path().join("b"), &extra));
    for f in ["sample_00.png", "sample_01.png", "denoising.gif"] {
        let read = |d: &str| std::fs::read(dir.path().join(d).join(f)).unwrap();
        assert_eq!(read("a"), read("b"), "{f}");
    }
}

#[test]
fn inpainting_refuses_bad_masks_and_options() {
    let dir = tempfile::tempdir().unwrap();
    let pics = dataset(&dir.path().join("data"));
    let out = dir.path().join("out");
    let wide = mask(&dir.path().join("wide.png"), (40, 20), |x, _| x > 20);
    assert_fails_with(
        &inpaint(&pics[0], &wide, &out, &[]),
        "is 40x20 but the picture is 32x32",
    );
    let black = mask(&dir.path().join("black.png"), (32, 32), |_, _| false);
    assert_fails_with(&inpaint(&pics[0], &black, &out, &[]), "repaints nothing");
    let white = mask(&dir.path().join("white.png"), (32, 32), |_, _| true);
    assert_fails_with(&inpaint(&pics[0], &white, &out, &[]), "repaints everything");
    assert_fails_with(
        &inpaint(&pics[0], &white, &out, &["--invert-mask"]),
        "repaints nothing",
    );
    let half = mask(&dir.path().join("half.png"), (32, 32), |x, _| x > 16);
    let zero = ["--method", "repaint", "--jump-length", "0"];
    assert_fails_with(
        &inpaint(&pics[0], &half, &out, &zero),
        "--jump-length 0: must be at least 1",
    );
    assert_fails_with(
        &inpaint(&pics[0], &half, &out, &["--jump-n-sample", "3"]),
        "--jump-n-sample applies to --method repaint only",
    );
    assert_fails_with(
        &inpaint(&pics[0], &half, &out, &["--method", "blur"]),
        "unknown inpainting method 'blur'",
    );
    assert!(!out.exists(), "a refused run wrote its folder");
}

fn interpolate(out: &Path, frames: &str) -> std::process::Output {
    diffuse(&[
        "interpolate",
        "--model",
        "shapes32",
        "--prompt",
        "a red circle",
        "--prompt-to",
        "a blue square",
        "--seed",
        "3",
        "--seed-to",
        "4",
        "--frames",
        frames,
        "--steps",
        "5",
        "--out",
        s(out),
        "--quiet",
    ])
}

#[test]
fn interpolation_ends_are_plain_samples() {
    let dir = tempfile::tempdir().unwrap();
    let walk = dir.path().join("walk");
    ok(&interpolate(&walk, "3"));
    for (prompt, seed, frame) in [
        ("a red circle", "3", "sample_000.png"),
        ("a blue square", "4", "sample_002.png"),
    ] {
        let out = dir.path().join(seed);
        ok(&diffuse(&[
            "generate",
            "--model",
            "shapes32",
            "--prompt",
            prompt,
            "--seed",
            seed,
            "--num-images",
            "1",
            "--sampler",
            "ddim",
            "--steps",
            "5",
            "--out",
            s(&out),
            "--quiet",
        ]));
        let a = std::fs::read(out.join("sample_00.png")).unwrap();
        assert_eq!(
            a,
            std::fs::read(walk.join(frame)).unwrap(),
            "{prompt} seed {seed}"
        );
    }
    // The middle differs from both ends, and the run is deterministic.
    let read = |d: &Path, f: &str| std::fs::read(d.join(f)).unwrap();
    assert_ne!(read(&walk, "sample_001.png"), read(&walk, "sample_000.png"));
    let again = dir.path().join("again");
    ok(&interpolate(&again, "3"));
    for f in ["sample_001.png", "interpolation.gif", "strip.png"] {
        assert_eq!(read(&walk, f), read(&again, f), "{f}");
    }
    assert_eq!(
        run_json(&walk)["weights"],
        serde_json::json!([0.0, 0.5, 1.0])
    );
}

#[test]
fn interpolation_refuses_too_few_frames_and_an_empty_walk() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("x");
    for n in ["0", "1"] {
        assert_fails_with(
            &interpolate(&out, n),
            &format!("--frames {n}: an interpolation has 2..=256 frames"),
        );
    }
    let same = diffuse(&[
        "interpolate",
        "--model",
        "shapes32",
        "--prompt",
        "a red circle",
        "--seed",
        "3",
        "--seed-to",
        "3",
        "--out",
        s(&out),
    ]);
    assert_fails_with(
        &same,
        "--seed-to 3: is the same as --seed and the prompts are the same",
    );
    assert!(!out.exists());
}

fn invert(pic: &Path, out: &Path, extra: &[&str]) -> std::process::Output {
    let mut a = vec![
        "invert",
        "--model",
        "shapes32",
        "--image",
        s(pic),
        "--out",
        s(out),
        "--quiet",
        "--json",
    ];
    a.extend_from_slice(extra);
    diffuse(&a)
}

/// The round trip's threshold at 50 steps: the mean PSNR over eight dataset pictures. Single
/// pictures vary (17-42 dB on 16 shapes pictures, mean 31.7 dB: see the README); sampling
/// from unrelated noise gives about 10 dB.
const MIN_MEAN_PSNR_DB: f64 = 28.0;

#[test]
fn inversion_round_trip_reaches_its_psnr_and_generate_reproduces_it() {
    let dir = tempfile::tempdir().unwrap();
    let pics = dataset_of(&dir.path().join("data"), 8);
    let mut psnr = Vec::new();
    for (i, pic) in pics.iter().enumerate() {
        let out = dir.path().join(format!("inv{i}"));
        let o = invert(pic, &out, &[]);
        ok(&o);
        let r: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        psnr.push(r["psnr_db"].as_f64().unwrap());
        assert_eq!(r["timesteps"].as_array().unwrap().len(), 50);
    }
    let mean = psnr.iter().sum::<f64>() / psnr.len() as f64;
    assert!(mean > MIN_MEAN_PSNR_DB, "mean {mean:.2} dB over {psnr:.1?}");
    // The printed command samples the same reconstruction back from the noise file.
    let out = dir.path().join("inv0");
    let cmd = run_json(&out)["reconstruct_command"]
        .as_str()
        .unwrap()
        .to_string();
    let mut args: Vec<String> = split_command(&cmd);
    assert_eq!(args.remove(0), "diffuse");
    let back = dir.path().join("back");
    args.extend(["--out".into(), s(&back).into(), "--quiet".into()]);
    ok(&diffuse(
        &args.iter().map(String::as_str).collect::<Vec<_>>(),
    ));
    let read = |p: PathBuf| std::fs::read(p).unwrap();
    assert_eq!(
        read(back.join("sample_00.png")),
        read(out.join("reconstruction.png"))
    );
    // Deterministic.
    let again = dir.path().join("again");
    ok(&invert(&pics[0], &again, &[]));
    assert_eq!(
        read(again.join("noise.safetensors")),
        read(out.join("noise.safetensors"))
    );
}

/// Splits a command line on spaces, keeping "quoted strings" whole.
fn split_command(cmd: &str) -> Vec<String> {
    let mut args = Vec::new();
    let mut rest = cmd.trim();
    while !rest.is_empty() {
        let (arg, tail) = match rest.strip_prefix('"') {
            Some(q) => q.split_once('"').unwrap(),
            None => rest.split_once(' ').unwrap_or((rest, "")),
        };
        args.push(arg.to_string());
        rest = tail.trim_start();
    }
    args
}

#[test]
fn inversion_refuses_samplers_that_cannot_be_inverted() {
    let dir = tempfile::tempdir().unwrap();
    let pics = dataset(&dir.path().join("data"));
    let out = dir.path().join("x");
    assert_fails_with(
        &invert(&pics[0], &out, &["--sampler", "ddpm"]),
        "--sampler ddpm cannot be inverted",
    );
    assert_fails_with(
        &invert(&pics[0], &out, &["--sampler", "dpm++2m"]),
        "only deterministic DDIM",
    );
    assert_fails_with(
        &invert(&pics[0], &out, &["--eta", "0.5"]),
        "--eta 0.5 makes DDIM stochastic",
    );
    assert_fails_with(
        &invert(&pics[0], &out, &["--start-step", "50"]),
        "--start-step 50 is out of range 0..=49",
    );
    assert!(!out.exists());
}

/// Writes `tensors` as a safetensors file.
fn write_tensors(path: &Path, tensors: &[(&str, candle_core::Tensor)]) {
    let map: std::collections::HashMap<String, candle_core::Tensor> = tensors
        .iter()
        .map(|(n, t)| (n.to_string(), t.clone()))
        .collect();
    candle_core::safetensors::save(&map, path).unwrap();
}

#[test]
fn from_noise_refuses_wrong_files_and_starts_where_the_inversion_stopped() {
    use candle_core::{DType, Device, Tensor};
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let gen = |file: &Path, extra: &[&str]| {
        let mut a = vec![
            "generate",
            "--model",
            "shapes32",
            "--prompt",
            "a red circle",
            "--from-noise",
            s(file),
            "--steps",
            "5",
            "--out",
            s(&out),
            "--quiet",
        ];
        a.extend_from_slice(extra);
        diffuse(&a)
    };
    let cpu = Device::Cpu;
    let small = dir.path().join("small.safetensors");
    write_tensors(
        &small,
        &[(
            "noise",
            Tensor::zeros((1, 3, 16, 16), DType::F32, &cpu).unwrap(),
        )],
    );
    assert_fails_with(
        &gen(&small, &[]),
        "holds a tensor of shape [1, 3, 16, 16]; this model needs [K, 3, 32, 32]",
    );
    let f64_file = dir.path().join("f64.safetensors");
    write_tensors(
        &f64_file,
        &[(
            "noise",
            Tensor::zeros((1, 3, 32, 32), DType::F64, &cpu).unwrap(),
        )],
    );
    assert_fails_with(
        &gen(&f64_file, &[]),
        "holds F64 values; a noise file holds F32",
    );
    let two = dir.path().join("two.safetensors");
    let z = Tensor::zeros((1, 3, 32, 32), DType::F32, &cpu).unwrap();
    write_tensors(&two, &[("a", z.clone()), ("b", z.clone())]);
    assert_fails_with(&gen(&two, &[]), "has no tensor named 'noise'");
    let three = dir.path().join("three.safetensors");
    write_tensors(
        &three,
        &[(
            "noise",
            Tensor::zeros((3, 3, 32, 32), DType::F32, &cpu).unwrap(),
        )],
    );
    assert_fails_with(
        &gen(&three, &["--num-images", "2"]),
        "holds 3 starting states but --num-images is 2",
    );
    assert_fails_with(&gen(Path::new("/dev/zero"), &[]), "not a regular file");
    // A plain noise file works and is deterministic; --start-step past the end is refused.
    let plain = dir.path().join("plain.safetensors");
    write_tensors(
        &plain,
        &[(
            "noise",
            Tensor::randn(0f32, 1.0, (1, 3, 32, 32), &cpu).unwrap(),
        )],
    );
    ok(&gen(&plain, &["--sampler", "ddim", "--num-images", "2"]));
    assert_eq!(run_json(&out)["from_noise"], s(&plain));
    assert_fails_with(
        &gen(&plain, &["--start-step", "5", "--force"]),
        "--start-step 5 is out of range 0..=4",
    );
    // A file from `invert --start-step 2` starts generate at step 2, and only there.
    let dataset_dir = dir.path().join("data");
    let pics = dataset(&dataset_dir);
    let inv = dir.path().join("inv");
    ok(&invert(
        &pics[0],
        &inv,
        &["--steps", "5", "--start-step", "2"],
    ));
    let noise = inv.join("noise.safetensors");
    ok(&gen(&noise, &["--sampler", "ddim", "--force"]));
    let r = run_json(&out);
    assert_eq!(r["start_step"], 2);
    assert_eq!(r["timesteps"], serde_json::json!([400, 200, 0]));
    let trailing = [
        "--sampler",
        "ddim",
        "--force",
        "--timestep-spacing",
        "trailing",
    ];
    assert_fails_with(
        &gen(&noise, &trailing),
        "is the state at t=400 (step 2 of 5 ddim steps), but this run's step 2 is at t=599",
    );
}

#[test]
fn img2img_start_step_is_the_step_its_strength_gives() {
    let dir = tempfile::tempdir().unwrap();
    let pics = dataset(&dir.path().join("data"));
    let run = |name: &str, extra: &[&str]| {
        let out = dir.path().join(name);
        let mut a = vec![
            "img2img",
            "--model",
            "shapes32",
            "--image",
            s(&pics[2]),
            "--prompt",
            "a green cross",
            "--steps",
            "20",
            "--seed",
            "1",
            "--out",
            s(&out),
            "--quiet",
        ];
        a.extend_from_slice(extra);
        ok(&diffuse(&a));
        std::fs::read(out.join("sample_00.png")).unwrap()
    };
    assert_eq!(
        run("strength", &["--strength", "0.5"]),
        run("step", &["--start-step", "10"])
    );
    assert_eq!(run_json(&dir.path().join("step"))["start_step"], 10);
    let both = diffuse(&[
        "img2img",
        "--model",
        "shapes32",
        "--image",
        s(&pics[2]),
        "--prompt",
        "a red circle",
        "--strength",
        "0.5",
        "--start-step",
        "3",
    ]);
    assert_fails_with(&both, "--start-step");
}
