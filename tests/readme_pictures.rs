//! Every picture command of the README and of its gallery (`docs/gallery.md`) runs, at a tiny
//! setting, and writes what it names; every picture the README shows is in the gallery with
//! its command; `assets/make.sh` runs the same commands, so none can drift from the program.

use std::path::Path;
use std::process::Command;

const README: &str = include_str!("../README.md");
const GALLERY: &str = include_str!("../docs/gallery.md");

/// The `diffuse …` lines of the README and the gallery: the commands under their pictures
/// (the README's other commands sit in table cells and prose).
fn picture_commands() -> Vec<String> {
    let mut cmds: Vec<String> = Vec::new();
    for line in README.lines().chain(GALLERY.lines()) {
        if line.starts_with("diffuse ") && !cmds.iter().any(|c| c == line) {
            cmds.push(line.to_string());
        }
    }
    cmds
}

/// The pictures a page shows: the targets of its `![…](…)` links, without `../`.
fn pictures(page: &str) -> Vec<String> {
    page.split("![")
        .skip(1)
        .filter_map(|b| b.split_once("](").and_then(|(_, r)| r.split(')').next()))
        .map(|t| t.trim_start_matches("../").to_string())
        .collect()
}

#[test]
fn every_readme_picture_is_in_the_gallery_with_its_command() {
    let shown = pictures(README);
    assert!(
        shown.len() >= 3,
        "the README shows {} pictures",
        shown.len()
    );
    let gallery = pictures(GALLERY);
    for p in &shown {
        assert!(
            gallery.contains(p),
            "{p} is in the README, not in docs/gallery.md"
        );
        assert!(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join(p)
                .is_file(),
            "{p} is missing"
        );
    }
    // Each README picture is followed by its command, the gallery's same line.
    for block in README.split("![").skip(1) {
        let cmd = block
            .lines()
            .find(|l| l.starts_with("diffuse "))
            .expect("a README picture has its command after it");
        assert!(GALLERY.contains(cmd), "{cmd} is not in the gallery");
    }
}

/// Splits a shell command line on spaces, keeping "double-quoted" words whole.
fn shell_words(line: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut cur = String::new();
    let (mut quoted, mut any) = (false, false);
    for c in line.chars() {
        match c {
            '"' => {
                quoted = !quoted;
                any = true;
            }
            ' ' if !quoted => {
                if any {
                    words.push(std::mem::take(&mut cur));
                    any = false;
                }
            }
            c => {
                cur.push(c);
                any = true;
            }
        }
    }
    if any {
        words.push(cur);
    }
    words
}

/// The command at a tiny setting: few steps, few samples, small batches.
fn tiny(words: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut it = words[1..].iter();
    while let Some(w) = it.next() {
        let small = match w.as_str() {
            "--steps" => Some("3"),
            "--samples-per-prompt" => Some("1"),
            "--sweep-steps" => Some("2,3"),
            "--batch-size" => Some("4"),
            "--checkpoint-every" => Some("2"),
            "--copy-rate" => Some("2"),
            _ => None,
        };
        out.push(w.clone());
        if let Some(v) = small {
            it.next();
            out.push(v.into());
        }
    }
    let command = out[0].clone();
    if matches!(command.as_str(), "generate" | "eval" | "train" | "invert")
        && !out.iter().any(|w| w == "--steps")
    {
        out.extend(["--steps".into(), "3".into()]);
    }
    if command == "train" && !out.iter().any(|w| w == "--preview-steps") {
        out.extend(["--preview-steps".into(), "2".into()]);
    }
    if command == "eval" && out.iter().any(|w| w == "--sweep") {
        out.extend(["--sweep-steps".into(), "2,3".into()]);
    }
    out.push("--quiet".into());
    out
}

/// The files or folders a command names as its outputs.
fn outputs(words: &[String]) -> Vec<String> {
    words
        .windows(2)
        .filter(|w| {
            matches!(
                w[0].as_str(),
                "--out" | "--plot" | "--grid" | "--sweep" | "--run-dir"
            )
        })
        .map(|w| w[1].clone())
        .collect()
}

#[test]
fn readme_lists_the_pictures_the_issue_asks_for() {
    let cmds = picture_commands().join("\n");
    for needle in [
        // The text-to-image model's six pictures.
        "diffuse generate --prompt \"a cat with a computer\" --seed",
        "diffuse data emoji --held-out",
        "--grid-prompts held-out",
        "--attention-maps",
        "diffuse generate --prompt \"a cat above a computer\"",
        "diffuse generate --prompt \"a computer above a cat\"",
        "diffuse generate --prompt \"a cat with a computer\" --num-images 8",
        "diffuse compare --prompt \"a cat with a computer\" --guidance 0,1,3,7",
        // The shapes model's.
        "diffuse generate --model shapes32 --prompt \"a red circle\"",
        "diffuse noise --image assets/scene.png",
        "diffuse schedule --beta-schedule all --plot",
        "diffuse eval --model shapes32 --samples-per-prompt 1",
        "--num-images 8",
        "diffuse compare --model shapes32 --prompt \"a green triangle\" --guidance 0,1,3,7",
        "diffuse compare --model shapes32 --prompt \"a yellow diamond\" --sampler ddpm,ddim,dpm++2m --steps 10",
        "diffuse eval --model shapes32 --sweep",
        "diffuse train",
        "diffuse inpaint --model shapes32 --image assets/scene.png",
        "--method repaint",
        "diffuse interpolate --model shapes32 --prompt \"a red circle\" --seed 1 --seed-to 2",
        "--prompt-to \"a blue square\"",
        "diffuse invert --model shapes32 --image assets/scene.png",
        "diffuse generate --model shapes32 --from-noise out/invert/noise.safetensors",
    ] {
        assert!(cmds.contains(needle), "README pictures lack {needle}");
    }
}

#[test]
fn every_readme_picture_command_is_in_make_sh() {
    let make = include_str!("../assets/make.sh");
    for cmd in picture_commands() {
        // Training is not rerun by make.sh; it copies the committed run's loss curve.
        if cmd.starts_with("diffuse train ") {
            continue;
        }
        let line = cmd.replacen("diffuse ", "$bin ", 1);
        assert!(make.contains(&line), "assets/make.sh does not run: {cmd}");
    }
}

#[test]
fn every_readme_picture_command_runs_at_a_tiny_setting() {
    let dir = tempfile::tempdir().unwrap();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    std::fs::create_dir_all(dir.path().join("assets")).unwrap();
    std::fs::create_dir_all(dir.path().join("models")).unwrap();
    for file in [
        "assets/scene.png",
        "assets/scene-sun-mask.png",
        "models/ae64.safetensors",
    ] {
        std::fs::copy(root.join(file), dir.path().join(file)).unwrap();
    }
    let cmds = picture_commands();
    assert!(cmds.len() >= 15, "only {} picture commands", cmds.len());
    for cmd in cmds {
        let args = tiny(&shell_words(&cmd));
        let o = Command::new(env!("CARGO_BIN_EXE_diffuse"))
            .args(&args)
            .current_dir(dir.path())
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "{cmd} (run as {args:?}) failed: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        for out in outputs(&args) {
            let p = dir.path().join(&out);
            let written = if p.is_dir() {
                std::fs::read_dir(&p).unwrap().count() > 0
            } else {
                p.metadata().map(|m| m.len() > 0).unwrap_or(false)
            };
            assert!(written, "{cmd}: nothing written at {out}");
        }
    }
}

#[test]
fn shell_words_keeps_quoted_prompts_whole() {
    assert_eq!(
        shell_words("diffuse generate --prompt \"a red circle\" --seed 1"),
        [
            "diffuse",
            "generate",
            "--prompt",
            "a red circle",
            "--seed",
            "1"
        ]
    );
    assert_eq!(
        shell_words("diffuse eval --prompt \"\""),
        ["diffuse", "eval", "--prompt", ""]
    );
}

/// Pictures the README shows, each with the `make.sh` command that writes it and the file of
/// its output it copies: rerun in full, they must match the committed pictures pixel for
/// pixel, so the README's byte-identity claim holds for its own pictures.
const RERUN: [(&str, &str, &str); 4] = [
    (
        "$bin generate --model shapes32 --prompt \"a red circle\" --seed 1 --out out/red-circle --quiet",
        "out/red-circle/strip.png",
        "assets/readme/generate-strip.png",
    ),
    (
        "$bin noise --image assets/scene.png --out out/forward --size 128x128 --frames 25 --seed 0 --quiet",
        "out/forward/strip.png",
        "assets/readme/forward-strip.png",
    ),
    (
        "$bin compare --model shapes32 --prompt \"a yellow diamond\" --sampler ddpm,ddim,dpm++2m --steps 10 --seed 5 --out out/compare-samplers.png --quiet",
        "out/compare-samplers.png",
        "assets/readme/compare-samplers.png",
    ),
    (
        "$bin generate --prompt \"a cat with a computer\" --seed 1 --num-images 1 --out out/cat --quiet",
        "out/cat/strip.png",
        "assets/readme/cat-strip.png",
    ),
];

#[test]
fn readme_pictures_rerun_match_the_committed_ones_pixel_for_pixel() {
    let make = include_str!("../assets/make.sh");
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("assets")).unwrap();
    std::fs::copy(
        root.join("assets/scene.png"),
        dir.path().join("assets/scene.png"),
    )
    .unwrap();
    for (cmd, written, committed) in RERUN {
        assert!(make.contains(cmd), "assets/make.sh no longer runs {cmd}");
        let args = shell_words(cmd);
        let o = Command::new(env!("CARGO_BIN_EXE_diffuse"))
            .args(&args[1..])
            .current_dir(dir.path())
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "{cmd}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        let new = image::open(dir.path().join(written)).unwrap().to_rgb8();
        let old = image::open(root.join(committed)).unwrap().to_rgb8();
        assert_eq!(new.dimensions(), old.dimensions(), "{committed}: size");
        let differ = new
            .pixels()
            .zip(old.pixels())
            .filter(|(a, b)| a != b)
            .count();
        assert_eq!(
            differ, 0,
            "{committed}: {differ} pixels differ from a rerun of its command; run `bash assets/make.sh`"
        );
    }
}
