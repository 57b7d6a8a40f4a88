//! `diffuse noise` and `diffuse schedule` end to end, through the real binary.

mod common;
use common::{assert_fails_with, diffuse, run_json, s};

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn scene() -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("assets/scene.png")
        .to_string_lossy()
        .into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn frames_in(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir.join("frames"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    v.sort();
    v
}

#[test]
fn noise_writes_frames_gif_strip_runjson_and_tensors() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("run");
    let o = diffuse(&[
        "noise",
        "--image",
        &scene(),
        "--out",
        s(&out),
        "--timesteps",
        "0,100,250,999",
        "--size",
        "32x24",
        "--save-tensors",
        "--quiet",
        "--seed",
        "3",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));

    let frames = frames_in(&out);
    let names: Vec<String> = frames
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        names,
        [
            "frame_0000.png",
            "frame_0001.png",
            "frame_0002.png",
            "frame_0003.png"
        ]
    );
    // A labelled frame: a two-line title band (28 px) and the row's name (14 px) over the
    // 32x24 picture with a 1-pixel border, upscaled 6x to reach 192 px; at least 448 px wide.
    let f0 = image::open(&frames[0]).unwrap();
    assert_eq!((f0.width(), f0.height()), (448, 28 + 14 + 26 * 6));

    // The GIF decodes, loops and has one frame per timestep.
    let file = std::fs::File::open(out.join("noising.gif")).unwrap();
    let mut opts = gif::DecodeOptions::new();
    opts.set_color_output(gif::ColorOutput::RGBA);
    let mut dec = opts.read_info(file).unwrap();
    let mut n = 0;
    while dec.read_next_frame().unwrap().is_some() {
        n += 1;
    }
    assert_eq!(n, 4);
    assert_eq!(dec.repeat(), gif::Repeat::Infinite);

    assert!(image::open(out.join("strip.png")).unwrap().width() > 4 * 32);

    let run = run_json(&out);
    assert_eq!(run["timesteps"], serde_json::json!([0, 100, 250, 999]));
    assert_eq!(run["seed"], 3);
    assert_eq!(run["size"], serde_json::json!([32, 24]));
    assert_eq!(run["original_size"], serde_json::json!([256, 256]));
    assert_eq!(run["beta_schedule"], "linear");
    assert_eq!(run["diffuse_version"], env!("CARGO_PKG_VERSION"));
    assert!(run["timings"]["total_ms"].as_f64().unwrap() > 0.0);

    // The safetensors round-trips, and its frames agree with the PNGs and the closed form.
    let t = candle_core::safetensors::load(
        out.join("trajectory.safetensors"),
        &candle_core::Device::Cpu,
    )
    .unwrap();
    assert_eq!(t["x0"].dims(), &[3, 24, 32]);
    assert_eq!(t["noise"].dims(), &[3, 24, 32]);
    assert_eq!(t["x_t"].dims(), &[4, 3, 24, 32]);
    assert_eq!(t["timesteps"].dtype(), candle_core::DType::I64);
    assert_eq!(
        t["timesteps"].to_vec1::<i64>().unwrap(),
        vec![0, 100, 250, 999]
    );
    let sched = diffuse::schedule::NoiseSchedule::new(Default::default()).unwrap();
    let a = sched.alphas_cumprod[250];
    let want =
        ((&t["x0"] * a.sqrt()).unwrap() + (&t["noise"] * (1.0 - a).sqrt()).unwrap()).unwrap();
    let got = t["x_t"].get(2).unwrap();
    let diff = common::max_abs_diff(&want, &got);
    assert!(diff < 1e-5, "x_t[2] differs from the closed form by {diff}");
    // The frame shows exactly this tensor: its picture starts under the 42-pixel bands, past
    // the 1-pixel border, each pixel a 6x6 block.
    let png = image::open(&frames[2]).unwrap().to_rgb8();
    let from_tensor = diffuse::render::to_rgb8(&got).unwrap();
    let shown = image::RgbImage::from_fn(32, 24, |x, y| *png.get_pixel(6 + 6 * x, 42 + 6 + 6 * y));
    assert!(
        shown.as_raw() == from_tensor.as_raw(),
        "frame 2 does not show x_t[2]"
    );
}

#[test]
fn default_run_has_fifty_evenly_spaced_frames() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("run");
    let o = diffuse(&[
        "noise",
        "--image",
        &scene(),
        "--out",
        s(&out),
        "--size",
        "16x16",
        "--quiet",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(frames_in(&out).len(), 50);
    let run = run_json(&out);
    let ts = run["timesteps"].as_array().unwrap();
    assert_eq!(ts.first().unwrap(), 0);
    assert_eq!(ts.last().unwrap(), 999);
    assert!(!out.join("trajectory.safetensors").exists());
}

#[test]
fn same_seed_gives_identical_bytes_and_another_seed_differs() {
    let tmp = tempfile::tempdir().unwrap();
    let img = scene();
    let run = |name: &str, seed: &str, markov: bool| {
        let out = tmp.path().join(name);
        let mut args = vec![
            "noise",
            "--image",
            &img,
            "--out",
            s(&out),
            "--frames",
            "6",
            "--size",
            "40x30",
            "--seed",
            seed,
            "--quiet",
        ];
        if markov {
            args.push("--markov");
        }
        let o = diffuse(&args);
        assert!(o.status.success(), "{}", stderr(&o));
        let mut bytes: Vec<Vec<u8>> = frames_in(&out)
            .iter()
            .map(|p| std::fs::read(p).unwrap())
            .collect();
        bytes.push(std::fs::read(out.join("noising.gif")).unwrap());
        bytes.push(std::fs::read(out.join("strip.png")).unwrap());
        bytes
    };
    assert_eq!(run("a", "42", false), run("b", "42", false));
    assert_ne!(run("c", "42", false), run("d", "43", false));
    assert_eq!(run("e", "9", true), run("f", "9", true));
}

#[test]
fn markov_mode_records_the_requested_timesteps() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("m");
    let o = diffuse(&[
        "noise",
        "--image",
        &scene(),
        "--out",
        s(&out),
        "--markov",
        "--timesteps",
        "5,60,20",
        "--size",
        "8x8",
        "--save-tensors",
        "--json",
        "--quiet",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let report: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(report["mode"], "markov");
    assert_eq!(report["timesteps"], serde_json::json!([5, 20, 60]));
    assert_eq!(frames_in(&out).len(), 3);
}

#[test]
fn existing_output_needs_force_and_force_replaces_old_frames() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("o");
    let args = |frames: &'static str| {
        vec![
            "noise".to_string(),
            "--image".into(),
            scene(),
            "--out".into(),
            s(&out).into(),
            "--frames".into(),
            frames.into(),
            "--size".into(),
            "8x8".into(),
            "--quiet".into(),
        ]
    };
    let run = |a: Vec<String>| {
        Command::new(env!("CARGO_BIN_EXE_diffuse"))
            .args(a)
            .output()
            .unwrap()
    };
    assert!(run(args("5")).status.success());
    let before = std::fs::read(out.join("run.json")).unwrap();
    let o = run(args("3"));
    assert_fails_with(&o, "is not empty (use --force to overwrite)");
    assert_eq!(
        std::fs::read(out.join("run.json")).unwrap(),
        before,
        "nothing was touched"
    );
    let mut forced = args("3");
    forced.push("--force".into());
    assert!(run(forced).status.success());
    assert_eq!(
        frames_in(&out).len(),
        3,
        "stale frames from the first run are gone"
    );
}

#[test]
fn bad_inputs_give_one_line_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let out = dir.join("out");
    let noise_with = |image: &str, extra: &[&str]| {
        let mut a = vec!["noise", "--image", image, "--out", s(&out), "--quiet"];
        a.extend_from_slice(extra);
        diffuse(&a)
    };

    let missing = dir.join("missing.png");
    assert_fails_with(&noise_with(s(&missing), &[]), "missing.png");
    assert_fails_with(&noise_with(s(&missing), &[]), "No such file");

    assert_fails_with(&noise_with(s(dir), &[]), "is a directory");

    let empty = dir.join("empty.png");
    std::fs::write(&empty, b"").unwrap();
    assert_fails_with(&noise_with(s(&empty), &[]), "empty.png': the file is empty");

    let truncated = dir.join("truncated.png");
    let full = std::fs::read(scene()).unwrap();
    std::fs::write(&truncated, &full[..full.len() / 3]).unwrap();
    assert_fails_with(
        &noise_with(s(&truncated), &[]),
        "truncated.png': cannot decode",
    );

    let text = dir.join("notes.png");
    std::fs::write(&text, b"this is not a picture\n").unwrap();
    assert_fails_with(&noise_with(s(&text), &[]), "notes.png': cannot decode");

    let img = scene();
    assert_fails_with(
        &noise_with(&img, &["--beta-schedule", "wobbly"]),
        "unknown beta schedule 'wobbly'",
    );
    assert_fails_with(
        &noise_with(&img, &["--beta-start", "0.03", "--beta-end", "0.02"]),
        "--beta-start 0.03 must be smaller than --beta-end 0.02",
    );
    assert_fails_with(
        &noise_with(&img, &["--beta-end", "1.2"]),
        "--beta-end 1.2 is outside (0, 1)",
    );
    assert_fails_with(
        &noise_with(&img, &["--beta-start", "-0.1"]),
        "--beta-start -0.1 is outside (0, 1)",
    );
    assert_fails_with(
        &noise_with(&img, &["--timesteps", "0,1000"]),
        "timestep 1000 is out of range 0..=999",
    );
    assert_fails_with(
        &noise_with(&img, &["--timesteps", "-3"]),
        "timestep -3 is out of range",
    );
    assert_fails_with(&noise_with(&img, &["--frames", "0"]), "--frames 0");
    assert_fails_with(
        &noise_with(&img, &["--size", "0x10"]),
        "--size 0x10: width and height must be at least 1",
    );
    assert_fails_with(&noise_with(&img, &["--fps", "0"]), "--fps 0");
    // None of the above created the output folder.
    assert!(!out.exists());

    let blocker = dir.join("a-file");
    std::fs::write(&blocker, b"x").unwrap();
    let under_file = blocker.join("out");
    let o = diffuse(&["noise", "--image", &img, "--out", s(&under_file), "--quiet"]);
    assert_fails_with(&o, "a-file/out");
}

#[test]
fn schedule_json_is_one_object_with_the_arrays() {
    let o = diffuse(&[
        "schedule",
        "--beta-schedule",
        "cosine",
        "--train-timesteps",
        "20",
        "--json",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = String::from_utf8(o.stdout).unwrap();
    assert_eq!(text.trim_end().lines().count(), 1);
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["beta_schedule"], "cosine");
    assert_eq!(v["train_timesteps"], 20);
    assert_eq!(v["betas"].as_array().unwrap().len(), 20);
    assert_eq!(v["alphas_cumprod"].as_array().unwrap().len(), 20);
    let sched = diffuse::schedule::NoiseSchedule::new(diffuse::schedule::ScheduleConfig {
        beta_schedule: diffuse::schedule::BetaSchedule::Cosine,
        train_timesteps: 20,
        ..Default::default()
    })
    .unwrap();
    assert_eq!(
        v["alphas_cumprod"][7].as_f64().unwrap(),
        sched.alphas_cumprod[7]
    );
}

#[test]
fn schedule_table_and_plot() {
    let tmp = tempfile::tempdir().unwrap();
    let plot = tmp.path().join("s.png");
    let o = diffuse(&["schedule", "--beta-schedule", "all", "--plot", s(&plot)]);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = String::from_utf8(o.stdout).unwrap();
    for name in ["linear", "scaled-linear", "cosine", "sigmoid"] {
        assert!(
            text.contains(&format!("{name} schedule, T = 1000")),
            "{text}"
        );
    }
    let img = image::open(&plot).unwrap();
    assert_eq!((img.width(), img.height()), (1200, 480));
    // Without --force an existing plot is kept.
    let o = diffuse(&["schedule", "--plot", s(&plot)]);
    assert_fails_with(&o, "already exists (use --force to overwrite)");
    assert_fails_with(
        &diffuse(&["schedule", "--beta-schedule", "nope"]),
        "unknown beta schedule 'nope'",
    );
}
