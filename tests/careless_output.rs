//! Output that says what it shows (issue 28, parts 5, 7 and 8), through the real binary:
//! strip labels at each picture's own t, the final frame named as the sample, plurals, no
//! unused seed, pictures that are not square cropped with a note, and the GIF and strip of a
//! large picture at display size while the frames keep it whole.

mod common;
use common::{diffuse, run_json, s};

use std::path::Path;

fn ok(o: &std::process::Output) -> String {
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn scene() -> String {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/scene.png");
    p.to_string_lossy().into_owned()
}

/// `diffuse generate --model shapes32 --prompt "red circle"` with `extra` flags.
fn red_circle(extra: &[&str]) -> std::process::Output {
    let mut args = vec!["generate", "--model", "shapes32", "--prompt", "red circle"];
    args.extend_from_slice(extra);
    diffuse(&args)
}

#[test]
fn each_strip_label_is_the_t_of_its_picture_and_the_last_is_the_sample() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("run");
    let flags = [
        "--sampler",
        "ddim",
        "--steps",
        "5",
        "--seed",
        "2",
        "--quiet",
    ];
    ok(&red_circle(&[&flags[..], &["--out", s(&out)]].concat()));
    let run = run_json(&out);
    let timesteps: Vec<u64> = (run["timesteps"].as_array().unwrap().iter())
        .map(|t| t.as_u64().unwrap())
        .collect();
    assert_eq!(timesteps, [800, 600, 400, 200, 0]);
    // After the step from 800 the picture is x_600, ..., after the step from 0 the sample.
    assert_eq!(
        run["frame_labels"],
        serde_json::json!(["noise", "t=600", "t=400", "t=200", "t=0", "sample"])
    );
    // The x_t row's name (the band under the title) is the same on the frames between, and
    // different on the last frame, which shows the sample, not a noisy image.
    let band = |i: usize| {
        let img = image::open(out.join(format!("frames/frame_{i:04}.png"))).unwrap();
        img.to_rgb8().view(0, 28, 448, 14).to_image().into_raw()
    };
    use image::GenericImageView;
    assert_eq!(band(1), band(2));
    assert_ne!(
        band(4),
        band(5),
        "the final frame's top row is named like a noisy image"
    );
}

#[test]
fn messages_use_the_singular_for_one() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("one");
    let flags = [
        "--sampler",
        "ddim",
        "--steps",
        "1",
        "--num-images",
        "1",
        "--frames",
        "1",
    ];
    let line = ok(&red_circle(
        &[&flags[..], &["--seed", "1", "--out", s(&out)]].concat(),
    ));
    assert!(line.contains(": 1 image, ddim 1 step, "), "{line}");
    assert!(line.contains("(1 frame, "), "{line}");
    assert!(!line.contains("(s)"), "{line}");
    let noise_out = tmp.path().join("noise");
    let args = [
        "noise",
        "--image",
        &scene(),
        "--frames",
        "1",
        "--size",
        "16x16",
        "--out",
        s(&noise_out),
    ];
    let line = ok(&diffuse(&args));
    assert!(line.starts_with("wrote 1 frame (t = "), "{line}");
}

#[test]
fn a_seed_that_nothing_draws_from_is_not_printed() {
    use candle_core::{Device, Tensor};
    let tmp = tempfile::tempdir().unwrap();
    let noise = tmp.path().join("start.safetensors");
    let z = Tensor::randn(0f32, 1.0, (1, 3, 32, 32), &Device::Cpu).unwrap();
    candle_core::safetensors::save(&[("noise".to_string(), z)].into(), &noise).unwrap();
    let out = tmp.path().join("run");
    let gen = |sampler: &str| {
        let flags = [
            "--from-noise",
            s(&noise),
            "--sampler",
            sampler,
            "--steps",
            "3",
        ];
        ok(&red_circle(
            &[&flags[..], &["--out", s(&out), "--force"]].concat(),
        ))
    };
    // DDIM with η = 0 from a given noise draws nothing: no seed is printed.
    let line = gen("ddim");
    assert!(!line.contains(", seed "), "{line}");
    assert!(line.contains(", no seed used ("), "{line}");
    assert_eq!(run_json(&out)["seed_used"], false);
    // DDPM draws fresh noise at every step, so its seed is printed and recorded as used.
    let line = gen("ddpm");
    assert!(line.contains(", seed "), "{line}");
    assert_eq!(run_json(&out)["seed_used"], true);
    // Without --out the folder is named after the noise file, not after an unused seed.
    let cwd = tempfile::tempdir().unwrap();
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_diffuse"))
        .current_dir(cwd.path())
        .args([
            "generate",
            "--model",
            "shapes32",
            "--prompt",
            "red circle",
            "--quiet",
        ])
        .args([
            "--from-noise",
            s(&noise),
            "--sampler",
            "ddim",
            "--steps",
            "2",
        ])
        .output()
        .unwrap();
    ok(&o);
    assert!(cwd.path().join("out/red-circle-start/run.json").exists());
}

/// A `w`×`h` picture: its left third red, the rest blue.
fn write_wide(path: &Path, w: u32, h: u32) {
    let img = image::RgbImage::from_fn(w, h, |x, _| match x < w / 3 {
        true => image::Rgb([255, 0, 0]),
        false => image::Rgb([0, 0, 255]),
    });
    img.save(path).unwrap();
}

#[test]
fn a_picture_that_is_not_square_is_cropped_to_its_centre_with_a_note() {
    let tmp = tempfile::tempdir().unwrap();
    let wide = tmp.path().join("wide.png");
    write_wide(&wide, 300, 100);
    let out = tmp.path().join("run");
    let args = [
        "img2img",
        "--model",
        "shapes32",
        "--image",
        s(&wide),
        "--prompt",
        "red circle",
        "--strength",
        "0.5",
        "--steps",
        "4",
        "--seed",
        "1",
        "--out",
        s(&out),
    ];
    let o = diffuse(&args);
    ok(&o);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("is 300x100, not square: used its centred 100x100 square (from x=100, y=0), scaled to 32x32"),
        "{err}"
    );
    // The centred square of the picture is all blue: the input frame holds no red.
    let input = image::open(out.join("frames/frame_0000.png"))
        .unwrap()
        .to_rgb8();
    let reddish = input.pixels().filter(|p| p[0] > 200 && p[2] < 60).count();
    assert_eq!(
        reddish, 0,
        "the red left third was squashed into the picture"
    );
    // inpaint crops its picture and its mask alike.
    let mask = tmp.path().join("mask.png");
    let white_left =
        image::GrayImage::from_fn(300, 100, |x, _| image::Luma([255 * u8::from(x < 100)]));
    white_left.save(&mask).unwrap();
    let out = tmp.path().join("inpaint");
    let args = [
        "inpaint",
        "--model",
        "shapes32",
        "--image",
        s(&wide),
        "--mask",
        s(&mask),
        "--prompt",
        "red circle",
        "--steps",
        "3",
        "--seed",
        "1",
        "--out",
        s(&out),
    ];
    let o = diffuse(&args);
    // The mask's centred square is all black (kept): nothing is left to repaint.
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success());
    assert!(err.contains("repaints nothing"), "{err}");
}

#[test]
fn a_large_picture_is_shown_at_display_size_and_kept_whole_in_the_frames() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("big");
    let args = [
        "noise",
        "--image",
        &scene(),
        "--size",
        "1200x900",
        "--frames",
        "3",
        "--out",
        s(&out),
    ];
    let o = diffuse(&args);
    ok(&o);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains(
            "the GIF and strip show the picture at 400x300 (1/3); frames/ keeps it at 1200x900"
        ),
        "{err}"
    );
    assert_eq!(run_json(&out)["shown_size"], serde_json::json!([400, 300]));
    let frame = image::open(out.join("frames/frame_0000.png")).unwrap();
    assert!(frame.width() >= 1200 && frame.height() >= 900);
    let gif = image::open(out.join("noising.gif")).unwrap();
    assert!(
        gif.width() <= 512 && gif.height() <= 400,
        "{}x{}",
        gif.width(),
        gif.height()
    );
    let strip = image::open(out.join("strip.png")).unwrap();
    assert!(
        strip.width() <= 3 * 512,
        "strip {}x{}",
        strip.width(),
        strip.height()
    );
    // A picture within the display size is shown as it is.
    let small = tmp.path().join("small");
    let args = [
        "noise",
        "--image",
        &scene(),
        "--size",
        "64x64",
        "--frames",
        "2",
        "--out",
        s(&small),
    ];
    ok(&diffuse(&args));
    assert_eq!(run_json(&small)["shown_size"], serde_json::json!([64, 64]));
}

#[test]
fn messages_name_what_would_work() {
    // A model name that is neither a file nor a built-in model lists the built-in ones.
    let o = diffuse(&[
        "generate",
        "--model",
        "shapes33",
        "--prompt",
        "a red circle",
    ]);
    common::assert_fails_with(
        &o,
        "'shapes33': no such file or folder, and not a built-in model (emoji64 (the default), shapes32; `diffuse models` lists them)",
    );
    // export --diffusers of the text model says which models it can export.
    let tmp = tempfile::tempdir().unwrap();
    let o = diffuse(&["export", "--diffusers", s(&tmp.path().join("x"))]);
    common::assert_fails_with(
        &o,
        "Slot models export: the built-in shapes32 (--model shapes32)",
    );
}

/// The children of process `pid` that have exited but were not reaped (zombies).
fn zombie_children(pid: u32) -> usize {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return 0;
    };
    dir.flatten()
        .filter_map(|e| std::fs::read_to_string(e.path().join("stat")).ok())
        .filter(|stat| {
            // "pid (name) S ppid …": the fields after the name's closing parenthesis.
            let rest = stat.rsplit_once(") ").map_or("", |(_, r)| r);
            let mut f = rest.split(' ');
            let (state, ppid) = (f.next(), f.next());
            state == Some("Z") && ppid == Some(pid.to_string().as_str())
        })
        .count()
}

#[test]
fn serve_open_without_a_browser_says_so_in_one_line_and_reaps_its_child() {
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};
    let tmp = tempfile::tempdir().unwrap();
    // An opener that fails noisily, as xdg-open does without a browser; and no opener at all.
    let noisy = tmp.path().join("noisy");
    std::fs::create_dir(&noisy).unwrap();
    let script = noisy.join("xdg-open");
    std::fs::write(
        &script,
        "#!/bin/sh\nfor i in 1 2 3 4 5 6 7; do echo \"xdg-open: line $i\" >&2; done\nexit 3\n",
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    let empty = tmp.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    for path in [&noisy, &empty] {
        let mut child = Command::new(env!("CARGO_BIN_EXE_diffuse"))
            .args([
                "serve",
                "--port",
                "0",
                "--open",
                "--model",
                "shapes32",
                "--no-nearest-index",
            ])
            .env("PATH", path)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert!(
            line.starts_with("diffuse serve: http://127.0.0.1:"),
            "{line}"
        );
        std::thread::sleep(std::time::Duration::from_millis(1500));
        assert_eq!(
            zombie_children(child.id()),
            0,
            "the opener was left a zombie"
        );
        child.kill().unwrap();
        let out = child.wait_with_output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        let lines: Vec<&str> = err.lines().filter(|l| !l.is_empty()).collect();
        assert_eq!(lines.len(), 1, "{err}");
        assert!(
            lines[0]
                .starts_with("note: --open: no browser opened (xdg-open); open http://127.0.0.1:"),
            "{err}"
        );
    }
}
