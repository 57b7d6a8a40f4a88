//! The playground in a real browser: `tests/browser/playground.mjs` drives Debian's Chromium
//! through playwright-core against a fresh `diffuse serve` (types a prompt, clicks Generate,
//! waits for the last step, checks the canvases and the step counter, moves the forward tab's
//! t slider) and saves a screenshot (`DIFFUSE_SCREENSHOT=path`, else a temporary file).
//!
//! `tests/browser/is_it_new.mjs` clicks "Is it new?" on a server that indexed its training
//! scenes. `tests/browser/page_width.mjs` opens a run's `index.html` at 1280 and 390 px.
//!
//! They need `chromium` and `npm ci` in `tests/browser` (`.ci/run` installs both and sets
//! `DIFFUSE_BROWSER_TEST=require`). Without them it says so and passes only when that variable
//! is unset.

mod common;

use std::path::Path;
use std::process::Command;

use common::server::Server;

/// The browser scripts' folder and Chromium, or None (after saying so) when either is missing
/// and `DIFFUSE_BROWSER_TEST` is not `require`.
fn browser() -> Option<(std::path::PathBuf, String)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser");
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    let ready = Path::new(&chromium).exists() && dir.join("node_modules/playwright-core").exists();
    if !ready {
        let required = std::env::var("DIFFUSE_BROWSER_TEST").is_ok_and(|v| v == "require");
        assert!(
            !required,
            "DIFFUSE_BROWSER_TEST=require but {chromium} or tests/browser/node_modules is missing"
        );
        eprintln!("skipped: install chromium and run `npm ci` in tests/browser to run this test");
        return None;
    }
    Some((dir, chromium))
}

/// Runs `node SCRIPT ARGS…` from `dir` with Chromium; its one JSON line of output.
fn node(dir: &Path, chromium: &str, script: &str, args: &[&std::ffi::OsStr]) -> serde_json::Value {
    let o = Command::new("node")
        .arg(dir.join(script))
        .args(args)
        .env("CHROMIUM", chromium)
        .output()
        .expect("run node");
    let stdout = String::from_utf8_lossy(&o.stdout);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{script}: {stdout}{stderr}");
    eprintln!("browser: {stdout}");
    serde_json::from_str(stdout.trim()).unwrap()
}

#[test]
fn an_output_page_fits_a_laptop_and_a_phone_and_names_its_prompt() {
    let Some((dir, chromium)) = browser() else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("run");
    let o = common::diffuse(&[
        "generate",
        "--model",
        "shapes32",
        "--prompt",
        "red circle",
        "--steps",
        "3",
        "--num-images",
        "2",
        "--seed",
        "5",
        "--out",
        common::s(&out),
        "--quiet",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let page = out.join("index.html");
    let report = node(&dir, &chromium, "page_width.mjs", &[page.as_os_str()]);
    for r in report.as_array().unwrap() {
        let (width, scroll) = (r["width"].as_u64().unwrap(), r["scroll"].as_u64().unwrap());
        assert!(
            scroll <= width,
            "at {width} px index.html is {scroll} px wide"
        );
        assert_eq!(r["heading"], "diffuse generate: \"red circle\"");
    }
}

#[test]
fn is_it_new_shows_the_nearest_training_scenes_in_a_real_browser() {
    let Some((dir, chromium)) = browser() else {
        return;
    };
    let server = Server::start_indexed(&["--model", "shapes32"]);
    // Wait for the start-up index of the training scenes.
    let began = std::time::Instant::now();
    loop {
        let (_, status) = Server::json(server.get("/api/status"));
        if status["nearest_index"]["ready"] == true {
            break;
        }
        assert!(
            began.elapsed().as_secs() < 600,
            "the index is not ready: {status}"
        );
        std::thread::sleep(std::time::Duration::from_millis(500));
    }
    let url = format!("{}/", server.url);
    let report = node(&dir, &chromium, "is_it_new.mjs", &[url.as_ref()]);
    assert_eq!(report["captions"].as_array().unwrap().len(), 4);
}

#[test]
fn the_playground_works_in_a_real_browser() {
    let Some((dir, chromium)) = browser() else {
        return;
    };
    let server = Server::start(&[]);
    let tmp = tempfile::tempdir().unwrap();
    let shot = std::env::var("DIFFUSE_SCREENSHOT")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|_| tmp.path().join("playground.png"));
    let url = format!("{}/", server.url);
    let report = node(
        &dir,
        &chromium,
        "playground.mjs",
        &[url.as_ref(), shot.as_os_str()],
    );
    assert_eq!(report["steps"], 10);
    let img = image::open(&shot).unwrap();
    assert!(
        img.width() >= 1000 && img.height() >= 600,
        "{}x{}",
        img.width(),
        img.height()
    );
}
