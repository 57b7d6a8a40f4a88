//! `diffuse train` and `diffuse data shapes` through the real binary: a tiny run, resume,
//! and one-line errors.

mod common;
use common::{assert_fails_with, diffuse, s};

#[test]
fn tiny_training_run_writes_its_records_and_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("m.safetensors");
    let run = dir.path().join("run");
    let common = [
        "--base-channels",
        "8",
        "--batch-size",
        "2",
        "--checkpoint-every",
        "2",
        "--preview-steps",
        "2",
        "--quiet",
    ];
    let mut args = vec![
        "train",
        "--out",
        s(&model),
        "--run-dir",
        s(&run),
        "--steps",
        "2",
    ];
    args.extend_from_slice(&common);
    let o = diffuse(&args);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    for f in [
        "train_log.csv",
        "eval_log.csv",
        "loss.png",
        "preview_000002.png",
        "checkpoint.safetensors",
        "commands.txt",
    ] {
        assert!(run.join(f).exists(), "{f} missing");
    }
    assert!(model.exists());
    let log = std::fs::read_to_string(run.join("train_log.csv")).unwrap();
    assert_eq!(
        log.lines().next().unwrap(),
        "step,loss,lr,grad_norm,elapsed_s"
    );
    assert_eq!(log.lines().count(), 3);

    // Without --force the model is kept.
    assert_fails_with(&diffuse(&args), "already exists (use --force to overwrite)");

    let ckpt = run.join("checkpoint.safetensors");
    // The run's settings come from the checkpoint (flags that would change them are refused),
    // and without --run-dir it continues in the checkpoint's own folder, not runs/<stem>.
    let resume = vec![
        "train",
        "--out",
        s(&model),
        "--steps",
        "4",
        "--resume",
        s(&ckpt),
        "--quiet",
    ];
    let o = diffuse(&resume);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(String::from_utf8_lossy(&o.stdout).contains("finished at step 4/4"));
    let log = std::fs::read_to_string(run.join("train_log.csv")).unwrap();
    let steps: Vec<&str> = log
        .lines()
        .skip(1)
        .map(|l| l.split(',').next().unwrap())
        .collect();
    assert_eq!(steps, ["1", "2", "3", "4"]);
    // --checkpoint-every 2 was kept: the resumed run checkpointed and previewed at step 4.
    assert!(run.join("preview_000004.png").exists());
}

#[test]
fn resume_keeps_the_runs_settings_and_refuses_what_would_change_them() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("m.safetensors");
    let run = dir.path().join("run");
    let train = |extra: &[&str]| {
        let mut a = vec!["train", "--out", s(&model), "--run-dir", s(&run), "--quiet"];
        a.extend_from_slice(extra);
        diffuse(&a)
    };
    let o = train(&[
        "--steps",
        "2",
        "--base-channels",
        "8",
        "--batch-size",
        "2",
        "--checkpoint-every",
        "1",
        "--preview-steps",
        "2",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let ckpt = run.join("checkpoint.safetensors");
    let before = std::fs::read(&ckpt).unwrap();
    let resume = |extra: &[&str]| {
        let mut a = vec!["--resume", s(&ckpt)];
        a.extend_from_slice(extra);
        train(&a)
    };
    // Settings stored in the checkpoint cannot be changed on resume.
    for (flag, value) in [
        ("--lr", "0.01"),
        ("--batch-size", "4"),
        ("--base-channels", "16"),
        ("--data", "emoji"),
        ("--seed", "3"),
    ] {
        assert_fails_with(
            &resume(&["--steps", "3", flag, value]),
            "'--resume <CKPT>' cannot be used with",
        );
    }
    assert_fails_with(
        &resume(&["--steps", "3", "--beta-end", "0.03"]),
        "cannot be used with --resume",
    );
    // A total at or below the checkpoint's step is an error, not a false success.
    assert_fails_with(
        &resume(&["--steps", "2"]),
        "--steps 2 is not past the checkpoint's step 2",
    );
    assert_fails_with(&resume(&[]), "the run already finished its 2 steps");
    assert_eq!(std::fs::read(&ckpt).unwrap(), before, "nothing was written");
    // An allowed change is applied: previews every step from now on.
    let o = resume(&["--steps", "3"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(run.join("preview_000003.png").exists());
}

#[test]
fn training_errors_are_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("m.safetensors");
    let m = s(&model);
    let r = dir.path().join("runs");
    let with_run = |extra: &[&str]| {
        let mut a = vec!["train", "--out", m, "--run-dir", s(&r)];
        a.extend_from_slice(extra);
        diffuse(&a)
    };
    assert_fails_with(&with_run(&["--steps", "0"]), "--steps 0");
    assert_fails_with(&with_run(&["--batch-size", "0"]), "--batch-size 0");
    assert!(!r.exists(), "a rejected run writes nothing");
    let junk = dir.path().join("junk.safetensors");
    std::fs::write(&junk, b"not a checkpoint").unwrap();
    assert_fails_with(&with_run(&["--resume", s(&junk)]), "junk.safetensors");
    assert_fails_with(
        &with_run(&["--data", "no-such-pictures"]),
        "data folder 'no-such-pictures'",
    );
    let empty = dir.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    std::fs::write(empty.join("a.png"), b"broken").unwrap();
    assert_fails_with(
        &with_run(&["--data", s(&empty)]),
        "has no usable image (1 files skipped)",
    );
    let blocker = dir.path().join("file");
    std::fs::write(&blocker, b"x").unwrap();
    let under = blocker.join("m.safetensors");
    let o = diffuse(&[
        "train",
        "--out",
        s(&under),
        "--run-dir",
        s(&dir.path().join("r")),
        "--steps",
        "1",
        "--base-channels",
        "8",
        "--batch-size",
        "1",
    ]);
    assert_fails_with(&o, "file': File exists");
}

#[test]
fn data_shapes_writes_labelled_images_and_a_preview() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("d");
    let o = diffuse(&[
        "data",
        "shapes",
        "--count",
        "5",
        "--out",
        s(&out),
        "--quiet",
    ]);
    assert!(o.status.success());
    let mut names: Vec<String> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names.len(), 6);
    assert!(names.contains(&"preview.png".to_string()));
    let first = &names[0];
    let spec = diffuse::data::shapes::ShapeSpec::sample(1, 0);
    let (c, sh) = spec.label();
    assert_eq!(first, &format!("000000_{c}_{sh}.png"));
    assert_fails_with(
        &diffuse(&[
            "data",
            "shapes",
            "--count",
            "0",
            "--out",
            s(&dir.path().join("e")),
        ]),
        "--count 0",
    );
}

#[test]
fn trains_on_a_folder_of_class_subfolders() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("pics");
    for (class, rgb) in [("apples", [200u8, 30, 30]), ("Green Leaves", [30, 160, 40])] {
        std::fs::create_dir_all(data.join(class)).unwrap();
        for i in 0..3u8 {
            let img = image::RgbImage::from_pixel(40 + i as u32, 36, image::Rgb(rgb));
            img.save(data.join(class).join(format!("{i}.png"))).unwrap();
        }
    }
    std::fs::write(data.join("Green Leaves").join("broken.jpg"), b"no").unwrap();
    let model = dir.path().join("m.safetensors");
    let o = diffuse(&[
        "train",
        "--data",
        s(&data),
        "--out",
        s(&model),
        "--run-dir",
        s(&dir.path().join("run")),
        "--steps",
        "2",
        "--batch-size",
        "2",
        "--base-channels",
        "8",
        "--checkpoint-every",
        "2",
        "--preview-steps",
        "2",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(String::from_utf8_lossy(&o.stderr).contains("skipped 1 unreadable file in"));
    let m = diffuse::model::load_file(&model, &candle_core::Device::Cpu).unwrap();
    let words = &m.meta.unet.vocab.slots[0].words;
    // Folder names, in sorted order, become prompt words: lower case, spaces as hyphens.
    assert_eq!(words, &["green-leaves".to_string(), "apples".to_string()]);
    let o = diffuse(&[
        "generate",
        "--model",
        s(&model),
        "--prompt",
        "green-leaves",
        "--steps",
        "2",
        "--num-images",
        "1",
        "--seed",
        "0",
        "--out",
        s(&dir.path().join("gen")),
        "--quiet",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(dir.path().join("gen/sample_00.png").exists());
}

#[test]
fn emoji_training_has_everything_the_shapes_trainer_has() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("e.safetensors");
    let run = dir.path().join("run");
    let train = |extra: &[&str]| {
        let mut a = vec!["train", "--out", s(&model), "--run-dir", s(&run), "--quiet"];
        a.extend_from_slice(extra);
        diffuse(&a)
    };
    let o = train(&[
        "--data",
        "emoji",
        "--steps",
        "1",
        "--batch-size",
        "2",
        "--base-channels",
        "8",
        "--checkpoint-every",
        "1",
        "--preview-steps",
        "1",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    for f in [
        "train_log.csv",
        "loss.png",
        "preview_000001.png",
        "checkpoint.safetensors",
        "eval_log.csv",
    ] {
        assert!(run.join(f).exists(), "{f} missing");
    }
    let eval = std::fs::read_to_string(run.join("eval_log.csv")).unwrap();
    assert!(
        eval.starts_with("step,object_accuracy,all_found_accuracy,relation_accuracy,samples\n1,"),
        "{eval}"
    );
    let o = train(&[
        "--resume",
        s(&run.join("checkpoint.safetensors")),
        "--steps",
        "2",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(run.join("preview_000002.png").exists());
    // The model file is a text model: it reads captions.
    let out = dir.path().join("gen");
    let o = diffuse(&[
        "generate",
        "--model",
        s(&model),
        "--prompt",
        "a frog above a car",
        "--steps",
        "2",
        "--num-images",
        "1",
        "--out",
        s(&out),
        "--quiet",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}

#[cfg(unix)]
#[test]
fn sigterm_during_training_saves_a_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_diffuse"))
        .args([
            "train",
            "--out",
            s(&dir.path().join("m.safetensors")),
            "--run-dir",
            s(&run),
        ])
        .args([
            "--steps",
            "100000",
            "--batch-size",
            "2",
            "--base-channels",
            "8",
            "--quiet",
        ])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Wait until a few steps are logged, then ask it to stop as a service manager would.
    let log = run.join("train_log.csv");
    let started = std::time::Instant::now();
    while std::fs::read_to_string(&log).map_or(0, |t| t.lines().count()) < 3 {
        assert!(started.elapsed().as_secs() < 120, "training did not start");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let kill = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("stopped at step"));
    assert!(run.join("checkpoint.safetensors").exists());
}
