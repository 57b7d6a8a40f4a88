//! The playground in a real browser: `tests/browser/playground.mjs` drives Debian's Chromium
//! through playwright-core against a fresh `diffuse serve` (types a prompt, clicks Generate,
//! waits for the last step, checks the canvases and the step counter, moves the forward tab's
//! t slider) and saves a screenshot (`DIFFUSE_SCREENSHOT=path`, else a temporary file).
//!
//! It needs `chromium` and `npm ci` in `tests/browser` (`.ci/run` installs both and sets
//! `DIFFUSE_BROWSER_TEST=require`). Without them it says so and passes only when that variable
//! is unset.

mod common;

use std::path::Path;
use std::process::Command;

use common::server::Server;

#[test]
fn the_playground_works_in_a_real_browser() {
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
        return;
    }
    let server = Server::start(&[]);
    let tmp = tempfile::tempdir().unwrap();
    let shot = std::env::var("DIFFUSE_SCREENSHOT")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|_| tmp.path().join("playground.png"));
    let out = Command::new("node")
        .arg(dir.join("playground.mjs"))
        .arg(format!("{}/", server.url))
        .arg(&shot)
        .env("CHROMIUM", &chromium)
        .output()
        .expect("run node");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!("browser: {stdout}");
    let report: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(report["steps"], 10);
    let img = image::open(&shot).unwrap();
    assert!(
        img.width() >= 1000 && img.height() >= 600,
        "{}x{}",
        img.width(),
        img.height()
    );
}
