//! What the output shows, run with the real binary: frames carry a title band and named
//! rows, images are shown at 192 px or more, the GIF holds its last frame, `--show-noise` adds
//! a row, and every output folder has an `index.html` that shows its
//! pictures and settings without a server.

mod common;
use common::{diffuse, s};

use std::path::Path;

fn ok(o: &std::process::Output) {
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}

fn generate(out: &Path, extra: &[&str]) {
    let mut a = vec![
        "generate",
        "--model",
        "shapes32",
        "--prompt",
        "a red circle",
        "--steps",
        "4",
        "--num-images",
        "1",
        "--out",
        s(out),
        "--quiet",
    ];
    if !extra.contains(&"--seed") {
        a.extend(["--seed", "2"]);
    }
    a.extend_from_slice(extra);
    ok(&diffuse(&a));
}

/// Whether the top `band` rows of `img` hold dark (text) pixels.
fn has_text_on_top(img: &image::RgbImage, band: u32) -> bool {
    (0..band).any(|y| (0..img.width()).any(|x| img.get_pixel(x, y).0.iter().all(|c| *c < 80)))
}

#[test]
fn frames_have_titles_named_rows_and_a_visible_size() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("g");
    generate(&out, &[]);
    let f0 = image::open(out.join("frames/frame_0000.png"))
        .unwrap()
        .to_rgb8();
    // 32 px images at 6x: 1 image with its border is 204 px; frames are at least 448 px wide.
    assert_eq!(f0.width(), 448);
    // Title (28 px), then per row its name (14 px) and the images (34 * 6 px).
    assert_eq!(f0.height(), 28 + 2 * (14 + 34 * 6));
    assert!(has_text_on_top(&f0, 28), "no title");
    // The x0 row of the first frame is blank grey: there is no guess yet.
    let y = 28 + 14 + 34 * 6 + 14 + 6 * 10;
    assert_eq!(f0.get_pixel(6 * 10, y).0, [128, 128, 128]);
    // --show-noise adds a row.
    let noisy = dir.path().join("n");
    generate(&noisy, &["--show-noise"]);
    let n0 = image::open(noisy.join("frames/frame_0003.png"))
        .unwrap()
        .to_rgb8();
    assert_eq!(n0.height(), 28 + 3 * (14 + 34 * 6));
}

#[test]
fn the_gif_holds_its_last_frame_for_a_second_and_a_half() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("g");
    generate(&out, &["--fps", "20"]);
    let mut opts = gif::DecodeOptions::new();
    opts.set_color_output(gif::ColorOutput::RGBA);
    let mut dec = opts
        .read_info(std::fs::File::open(out.join("denoising.gif")).unwrap())
        .unwrap();
    let mut delays = Vec::new();
    while let Some(f) = dec.read_next_frame().unwrap() {
        delays.push(f.delay);
    }
    assert_eq!(delays.len(), 5);
    assert_eq!(&delays[..4], &[5, 5, 5, 5]);
    assert_eq!(delays[4], 150);
}

#[test]
fn every_output_folder_has_an_index_page() {
    let dir = tempfile::tempdir().unwrap();
    let pictures: [&[&str]; 4] = [
        &["strip.png", "denoising.gif", "grid.png"],
        &["strip.png", "noising.gif"],
        &[
            "strip.png",
            "inversion.gif",
            "input.png",
            "reconstruction.png",
        ],
        &["strip.png", "interpolation.gif", "sample_000.png"],
    ];
    for (args, pictures) in common::tiny_folder_runs().iter().zip(pictures) {
        let folder = dir.path().join(args[0]);
        let mut a = args.clone();
        a.extend(["--out", s(&folder), "--quiet"]);
        ok(&diffuse(&a));
        let title = format!("diffuse {}", args[0]);
        let html = std::fs::read_to_string(folder.join("index.html")).unwrap();
        // The heading names the command, and the prompt where the run has one.
        assert!(html.contains(&format!("<h1>{title}")), "{title}");
        let prompt = common::run_json(&folder)["prompt"]
            .as_str()
            .map(str::to_owned);
        if let Some(p) = prompt.filter(|p| !p.is_empty()) {
            let heading = format!("<h1>{title}: &quot;{p}");
            assert!(html.contains(&heading), "{title}: the heading lacks {p:?}");
        }
        for p in pictures {
            let img = format!("<img src=\"{p}\"");
            assert!(html.contains(&img), "{title} lacks {p}");
            assert!(folder.join(p).exists());
        }
        let settings = html.contains("<td>diffuse_version</td>");
        assert!(settings, "{title}: no settings");
        let listed = common::run_json(&folder)["files"].to_string();
        assert!(
            listed.contains("index.html"),
            "{title}: run.json does not list index.html"
        );
    }
    // A run with --force replaces the page.
    let g = dir.path().join("generate");
    generate(&g, &["--force", "--seed", "3"]);
    assert!(std::fs::read_to_string(g.join("index.html"))
        .unwrap()
        .contains("<td>seed</td><td>3</td>"));
}

#[test]
fn compare_draws_a_labelled_row_per_value_and_refuses_unclear_requests() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("c.png");
    let cmp = |extra: &[&str]| {
        let mut a = vec![
            "compare",
            "--model",
            "shapes32",
            "--prompt",
            "a red circle",
            "--steps",
            "3",
            "--out",
            s(&out),
            "--quiet",
        ];
        a.extend_from_slice(extra);
        diffuse(&a)
    };
    ok(&cmp(&["--guidance", "0,3", "--frames", "3"]));
    let two = image::open(&out).unwrap().to_rgb8();
    ok(&cmp(&["--guidance", "0,1,3", "--frames", "3", "--force"]));
    let three = image::open(&out).unwrap().to_rgb8();
    // One more row of the same height; the rows' width is the same.
    assert_eq!(three.width(), two.width());
    let row = three.height() - two.height();
    assert!(row > 32, "row height {row}");
    assert_eq!(two.height() - 28, 2 * row);
    use common::assert_fails_with;
    let o = cmp(&["--force"]);
    assert_fails_with(
        &o,
        "give one of them several comma-separated values to compare",
    );
    assert_fails_with(
        &cmp(&["--seed", "1,2", "--guidance", "1,2"]),
        "--guidance and --seed: compare one setting at a time",
    );
    assert_fails_with(
        &cmp(&["--seed", "1,2,3,4,5,6,7,8,9"]),
        "--seed 9: give 2..=8 comma-separated values",
    );
    assert_fails_with(
        &cmp(&["--seed", "1,2", "--frames", "1"]),
        "--frames 1 is out of range 2..=16",
    );
    assert_fails_with(
        &cmp(&["--guidance", "1,-2"]),
        "--guidance -2 must be a number in 0..=50",
    );
    assert_fails_with(&cmp(&["--seed", "1,2"]), "exists");
}

#[test]
fn forward_frames_fade_the_picture_evenly_by_default() {
    let dir = tempfile::tempdir().unwrap();
    let scene = common::SCENE;
    let run = |name: &str, extra: &[&str]| -> Vec<usize> {
        let out = dir.path().join(name);
        let mut a = vec![
            "noise",
            "--image",
            scene,
            "--size",
            "16x16",
            "--out",
            s(&out),
            "--quiet",
        ];
        a.extend_from_slice(extra);
        ok(&diffuse(&a));
        serde_json::from_value(common::run_json(&out)["timesteps"].clone()).unwrap()
    };
    let sched = diffuse::schedule::NoiseSchedule::new(Default::default()).unwrap();
    let signal = run("signal", &["--frames", "8"]);
    assert_eq!(signal.len(), 8);
    let amp: Vec<f64> = signal
        .iter()
        .map(|&t| sched.alphas_cumprod[t].sqrt())
        .collect();
    let step = (amp[0] - amp[7]) / 7.0;
    for w in amp.windows(2) {
        assert!((w[0] - w[1] - step).abs() < 0.01, "uneven fade {amp:?}");
    }
    assert_eq!(
        run("linear", &["--frames", "8", "--spacing", "linear"]),
        [0, 143, 285, 428, 571, 714, 856, 999]
    );
    let all = run("all", &["--frames", "all", "--train-timesteps", "20"]);
    assert_eq!(all, (0..20).collect::<Vec<_>>());
}

#[test]
fn help_groups_global_options_and_shows_device_only_where_it_is_used() {
    let help = |args: &[&str]| String::from_utf8_lossy(&diffuse(args).stdout).to_string();
    for cmd in [
        &["schedule", "--help"][..],
        &["data", "shapes", "--help"][..],
    ] {
        let h = help(cmd);
        assert!(h.contains("Global options:"), "{cmd:?}: {h}");
        assert!(!h.contains("--device"), "{cmd:?} offers --device");
    }
    for cmd in [
        "generate",
        "noise",
        "train",
        "eval",
        "bench",
        "invert",
        "inpaint",
        "interpolate",
        "compare",
        "img2img",
    ] {
        let h = help(&[cmd, "--help"]);
        assert!(h.contains("--device <DEVICE>"), "{cmd} lacks --device");
        let global = h
            .split("Global options:")
            .nth(1)
            .unwrap_or_else(|| panic!("{cmd}: no global group"));
        assert!(
            global.contains("--quiet") && global.contains("--threads"),
            "{cmd}"
        );
    }
}

#[test]
fn the_eval_grid_frames_the_samples_the_judge_got_wrong() {
    let dir = tempfile::tempdir().unwrap();
    let grid = dir.path().join("grid.png");
    // Two sampling steps leave most samples unreadable, so some cells must be framed.
    let o = diffuse(&[
        "eval",
        "--model",
        "shapes32",
        "--samples-per-prompt",
        "1",
        "--steps",
        "2",
        "--grid",
        s(&grid),
        "--json",
        "--quiet",
    ]);
    ok(&o);
    let r: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let right = r["both_accuracy"].as_f64().unwrap();
    assert!(right < 1.0, "every sample right at 2 steps: {right}");
    let img = image::open(&grid).unwrap().to_rgb8();
    let red = img.pixels().filter(|p| p.0 == [220, 30, 30]).count();
    // Each framed 128-px cell has 4 * 3 * 128 - 36 red pixels.
    let framed = (36.0 * (1.0 - right)).round() as usize;
    assert_eq!(red, framed * (12 * 128 - 36), "{framed} wrong cells");
}
