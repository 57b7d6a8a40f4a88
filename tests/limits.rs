//! Limits and bad input, each case running the real binary: every size, count and thread
//! option has a ceiling checked before any work starts, broken model files are refused with
//! one line, and options are validated the same way in every command.

mod common;

use common::{assert_fails_with, diffuse, s};
use diffuse::io::safetensors;
use diffuse::model::{ModelMeta, MODEL_KEY};

#[test]
fn sizes_counts_and_threads_have_ceilings_checked_up_front() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let o = s(&out);
    let gen = |extra: &[&str]| {
        let mut a = vec![
            "generate",
            "--model",
            "shapes32",
            "--prompt",
            "a red circle",
            "--out",
            o,
            "--steps",
            "2",
        ];
        a.extend_from_slice(extra);
        diffuse(&a)
    };
    assert_fails_with(
        &gen(&["--scale", "100000"]),
        "--scale 100000 is out of range 1..=64",
    );
    assert_fails_with(
        &gen(&["--num-images", "65"]),
        "--num-images 65 is out of range 1..=64",
    );
    assert_fails_with(
        &diffuse(&["--threads", "100000", "schedule"]),
        "--threads 100000 is out of range 1..=1024",
    );
    assert_fails_with(
        &diffuse(&[
            "train",
            "--out",
            s(&dir.path().join("m.safetensors")),
            "--batch-size",
            "1000000",
        ]),
        "--batch-size 1000000 is out of range 1..=4096",
    );
    assert_fails_with(
        &diffuse(&[
            "train",
            "--out",
            s(&dir.path().join("m.safetensors")),
            "--base-channels",
            "100000",
        ]),
        "--base-channels 100000 is out of range 1..=512",
    );
    assert_fails_with(
        &diffuse(&["data", "shapes", "--count", "10000000", "--out", o]),
        "--count 10000000 is out of range 1..=1000000",
    );
    assert_fails_with(&gen(&["--fps", "0"]), "--fps 0 is out of range (0, 100]");
    assert!(!out.exists(), "nothing was written");
}

#[test]
fn a_device_or_oversized_file_is_not_read_as_a_model() {
    if std::path::Path::new("/dev/zero").exists() {
        let o = diffuse(&[
            "generate",
            "--prompt",
            "red",
            "--model",
            "/dev/zero",
            "--out",
            "x",
        ]);
        assert_fails_with(&o, "'/dev/zero': not a regular file");
    }
}

#[test]
fn broken_model_metadata_is_refused_before_building_the_network() {
    let dir = tempfile::tempdir().unwrap();
    let dev = candle_core::Device::Cpu;
    let (meta, tensors): (ModelMeta, _) =
        safetensors::load_bytes_with_meta(diffuse::model::SHAPES32, MODEL_KEY, "built-in", &dev)
            .unwrap();
    let write = |name: &str, change: &dyn Fn(&mut ModelMeta)| {
        let mut m = meta.clone();
        change(&mut m);
        let path = dir.path().join(name);
        safetensors::save_with_meta(&path, &tensors, MODEL_KEY, &m).unwrap();
        path
    };
    let gen = |model: &std::path::Path| {
        diffuse(&[
            "generate",
            "--prompt",
            "red",
            "--model",
            s(model),
            "--out",
            s(&dir.path().join("o")),
        ])
    };
    let huge = write("huge.safetensors", &|m| m.unet.image_size = 100_000);
    assert_fails_with(&gen(&huge), "image_size 100000 is above the limit 1024");
    let heads = write("heads.safetensors", &|m| m.unet.num_heads = 0);
    assert_fails_with(&gen(&heads), "num_heads must be at least 1");
    let format = write("format.safetensors", &|m| m.format = 99);
    assert_fails_with(
        &gen(&format),
        "model format 99 is not one this diffuse reads (1)",
    );
}

#[test]
fn eval_and_generate_validate_options_the_same_way() {
    for g in ["NaN", "inf", "-1"] {
        let o = diffuse(&[
            "eval",
            "--model",
            "shapes32",
            "--guidance",
            g,
            "--samples-per-prompt",
            "1",
        ]);
        assert_fails_with(&o, &format!("--guidance {g}"));
        let o = diffuse(&[
            "generate",
            "--model",
            "shapes32",
            "--prompt",
            "red",
            "--guidance",
            g,
            "--out",
            "x",
        ]);
        assert_fails_with(&o, &format!("--guidance {g}"));
    }
    let o = diffuse(&[
        "generate",
        "--model",
        "shapes32",
        "--prompt",
        "red",
        "--sampler",
        "ddim",
        "--eta",
        "5",
        "--out",
        "x",
    ]);
    assert_fails_with(&o, "--eta 5 is outside [0, 1]");
    assert!(!std::path::Path::new("x").exists());
}

#[test]
fn force_replaces_a_runs_own_files_and_keeps_the_users() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let gen = |images: &str| {
        let o = diffuse(&[
            "generate",
            "--model",
            "shapes32",
            "--prompt",
            "a red circle",
            "--steps",
            "2",
            "--num-images",
            images,
            "--seed",
            "1",
            "--out",
            s(&out),
            "--quiet",
            "--force",
        ]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    };
    gen("4");
    std::fs::write(out.join("notes.txt"), b"mine").unwrap();
    gen("2");
    assert!(out.join("sample_01.png").exists());
    assert!(
        !out.join("sample_03.png").exists(),
        "a stale sample is left"
    );
    assert_eq!(std::fs::read(out.join("notes.txt")).unwrap(), b"mine");
}

#[test]
fn img2img_records_itself_and_its_input() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let o = diffuse(&[
        "img2img",
        "--model",
        "shapes32",
        "--image",
        "assets/scene.png",
        "--prompt",
        "green",
        "--steps",
        "4",
        "--num-images",
        "1",
        "--seed",
        "1",
        "--out",
        s(&out),
        "--quiet",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let run = common::run_json(&out);
    assert_eq!(run["command"], "img2img");
    assert_eq!(run["image"], "assets/scene.png");
}

#[test]
fn single_file_outputs_are_checked_before_the_work() {
    let dir = tempfile::tempdir().unwrap();
    // A folder given where a file is wanted fails at once, not after sampling or training.
    let o = diffuse(&[
        "eval",
        "--model",
        "shapes32",
        "--grid",
        s(dir.path()),
        "--samples-per-prompt",
        "1",
    ]);
    assert_fails_with(&o, "it is a folder; give a file name");
    let o = diffuse(&["train", "--out", s(dir.path()), "--steps", "1"]);
    assert_fails_with(&o, "it is a folder; give a file name");
    assert!(!std::path::Path::new("runs")
        .join(dir.path().file_name().unwrap())
        .exists());
}

#[test]
fn smaller_ones_negative_numbers_long_prompts_and_class_folders() {
    // A negative number is a value, not a flag.
    let o = diffuse(&[
        "generate", "--model", "shapes32", "--prompt", "red", "--fps", "-10", "--out", "x",
    ]);
    assert_fails_with(&o, "--fps -10 is out of range (0, 100]");
    // A huge prompt is not echoed whole.
    let long = "mauve ".repeat(15_000); // 90 KB, under the OS limit of one argument
    let o = diffuse(&[
        "generate", "--model", "shapes32", "--prompt", &long, "--out", "x",
    ]);
    assert_fails_with(&o, "unknown word 'mauve'");
    assert!(o.stderr.len() < 1000, "{} bytes of error", o.stderr.len());
    // Class folders that collide, or that name an article, are refused.
    let dir = tempfile::tempdir().unwrap();
    for (a, b) in [("Red Fox", "red-fox"), ("a", "dog")] {
        let data = dir.path().join(format!("data-{b}"));
        for class in [a, b] {
            std::fs::create_dir_all(data.join(class)).unwrap();
            image::RgbImage::new(8, 8)
                .save(data.join(class).join("1.png"))
                .unwrap();
        }
        let model = dir.path().join(format!("{b}.safetensors"));
        let o = diffuse(&[
            "train",
            "--data",
            s(&data),
            "--out",
            s(&model),
            "--steps",
            "1",
        ]);
        let needle = if b == "dog" {
            "prompt word 'a'"
        } else {
            "both give the prompt word 'red-fox'"
        };
        assert_fails_with(&o, needle);
    }
}

#[test]
fn a_folder_another_run_is_writing_is_refused_and_no_lock_is_left_behind() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let gen = || {
        diffuse(&[
            "generate",
            "--model",
            "shapes32",
            "--prompt",
            "red",
            "--steps",
            "2",
            "--num-images",
            "1",
            "--seed",
            "1",
            "--out",
            s(&out),
            "--quiet",
            "--force",
        ])
    };
    let o = gen();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(
        !out.join(diffuse::io::fs::LOCK_NAME).exists(),
        "the lock is removed at the end"
    );
    // A live run's lock (this test process is alive) keeps a second run out.
    let me = std::process::id();
    std::fs::write(out.join(diffuse::io::fs::LOCK_NAME), format!("{me}\n")).unwrap();
    assert_fails_with(
        &gen(),
        &format!("another diffuse run (process {me}) is writing there"),
    );
    // The lock of a run that was killed (its process is gone) does not block the next.
    let mut child = std::process::Command::new("true").spawn().unwrap();
    let dead = child.id();
    child.wait().unwrap();
    std::fs::write(out.join(diffuse::io::fs::LOCK_NAME), format!("{dead}\n")).unwrap();
    let o = gen();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(!out.join(diffuse::io::fs::LOCK_NAME).exists());
}

#[test]
fn a_killed_run_leaves_nothing_that_blocks_the_next() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let args = [
        "generate",
        "--model",
        "shapes32",
        "--prompt",
        "red",
        "--steps",
        "1000",
        "--num-images",
        "1",
        "--seed",
        "1",
        "--out",
        s(&out),
        "--quiet",
        "--force",
    ];
    for signal in ["KILL", "INT", "TERM"] {
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_diffuse"))
            .args(args)
            .spawn()
            .unwrap();
        let lock = out.join(diffuse::io::fs::LOCK_NAME);
        let t0 = std::time::Instant::now();
        while !lock.exists() && t0.elapsed().as_secs() < 60 {
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        let pid = child.id().to_string();
        let killed = std::process::Command::new("kill")
            .args(["-s", signal, &pid])
            .status();
        assert!(killed.unwrap().success());
        let status = child.wait().unwrap();
        assert!(!status.success(), "SIGTERM/INT/KILL stops the run");
        // The next run into the same folder works.
        let short: Vec<&str> = args
            .iter()
            .map(|a| if *a == "1000" { "2" } else { a })
            .collect();
        let o = diffuse(&short);
        assert!(
            o.status.success(),
            "after SIG{signal}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        assert!(!lock.exists());
        let leftovers: Vec<_> = std::fs::read_dir(&out)
            .unwrap()
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with('.'))
            .collect();
        assert!(leftovers.is_empty(), "after SIG{signal}: {leftovers:?}");
    }
}

#[test]
fn noise_force_removes_an_earlier_runs_trajectory() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let noise = |extra: &[&str]| {
        let mut a = vec![
            "noise",
            "--image",
            "assets/scene.png",
            "--size",
            "16x16",
            "--frames",
            "3",
            "--out",
            s(&out),
            "--quiet",
            "--force",
        ];
        a.extend_from_slice(extra);
        let o = diffuse(&a);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    };
    noise(&["--save-tensors"]);
    assert!(out.join("trajectory.safetensors").exists());
    noise(&[]);
    assert!(
        !out.join("trajectory.safetensors").exists(),
        "a stale trajectory is left"
    );
}

#[test]
fn a_photo_is_turned_upright_by_its_exif_orientation() {
    let dir = tempfile::tempdir().unwrap();
    // A 40×20 JPEG tagged "rotate 90° clockwise" (EXIF orientation 6), as phones store them.
    let mut jpeg = Vec::new();
    image::RgbImage::from_pixel(40, 20, image::Rgb([200, 30, 30]))
        .write_to(
            &mut std::io::Cursor::new(&mut jpeg),
            image::ImageFormat::Jpeg,
        )
        .unwrap();
    let tiff: Vec<u8> = [
        b"II*\0".as_slice(),
        &8u32.to_le_bytes(),
        &1u16.to_le_bytes(),
        &0x0112u16.to_le_bytes(),
        &3u16.to_le_bytes(),
        &1u32.to_le_bytes(),
        &6u16.to_le_bytes(),
        &[0, 0],
        &0u32.to_le_bytes(),
    ]
    .concat();
    let payload = [b"Exif\0\0".as_slice(), &tiff].concat();
    let app1 = [
        &[0xFF, 0xE1][..],
        &((payload.len() + 2) as u16).to_be_bytes(),
        &payload,
    ]
    .concat();
    let tagged = [&jpeg[..2], &app1, &jpeg[2..]].concat();
    let path = dir.path().join("photo.jpg");
    std::fs::write(&path, tagged).unwrap();
    let out = dir.path().join("out");
    let o = diffuse(&[
        "noise",
        "--image",
        s(&path),
        "--frames",
        "2",
        "--out",
        s(&out),
        "--quiet",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let run = common::run_json(&out);
    assert_eq!(
        run["size"],
        serde_json::json!([20, 40]),
        "the picture is upright"
    );
}

#[test]
fn nan_weights_and_ignored_bench_flags_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    let dev = candle_core::Device::Cpu;
    let (meta, mut tensors): (ModelMeta, _) =
        safetensors::load_bytes_with_meta(diffuse::model::SHAPES32, MODEL_KEY, "built-in", &dev)
            .unwrap();
    let w = tensors.get("conv_out.weight").unwrap();
    let nan = (w.ones_like().unwrap() * f64::NAN).unwrap();
    tensors.insert("conv_out.weight".into(), nan);
    let path = dir.path().join("nan.safetensors");
    safetensors::save_with_meta(&path, &tensors, MODEL_KEY, &meta).unwrap();
    let o = diffuse(&[
        "generate",
        "--prompt",
        "red",
        "--model",
        s(&path),
        "--steps",
        "2",
        "--out",
        s(&dir.path().join("o")),
    ]);
    assert_fails_with(&o, "sampling produced NaN or infinite values");
    let o = diffuse(&["bench", "--model", "shapes32", "--base-channels", "16"]);
    assert_fails_with(
        &o,
        "--base-channels and --network choose the network of --model-only",
    );
}

#[test]
fn bench_leaves_out_end_to_end_cases_over_its_work_ceiling() {
    use diffuse::bench::end_to_end::{end_to_end_cases, MAX_CASE_GFLOP};
    let gflop = |name: &str| {
        let m = diffuse::model::load(Some(std::path::Path::new(name)), &candle_core::Device::Cpu)
            .unwrap();
        m.meta.unet.flops_per_image() / 1e9
    };
    // shapes32: all 12 full cases run, 64 images x 1000 steps included.
    let (cases, skipped) = end_to_end_cases(false, gflop("shapes32"));
    assert_eq!((cases.len(), skipped.len()), (12, 0));
    assert!(cases.contains(&(64, 1000)));
    // emoji64 (2.18 GFLOP per image): only 64 x 1000 is over the ceiling.
    let (cases, skipped) = end_to_end_cases(false, gflop("emoji64"));
    assert_eq!(skipped, [(64, 1000)]);
    assert_eq!(cases.len(), 11);
    assert!(64.0 * 1000.0 * gflop("emoji64") > MAX_CASE_GFLOP);
    // The quick set is small enough for any model the trainer builds.
    assert_eq!(end_to_end_cases(true, gflop("emoji64")).0.len(), 4);
}
