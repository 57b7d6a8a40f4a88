//! The whole-process figure of the `diffuse bench` suite: `diffuse generate` run as its own
//! process, start-up and model loading included, as a user meets it.

use super::suite::{measure, row, Row};
use crate::error::{Error, Result};

/// Wall time of whole `diffuse generate` processes, start-up and model loading included:
/// one image at generate's defaults (the speed target), with all frames and with two.
pub(super) fn whole_process(
    exe: &std::path::Path,
    model: (Option<&std::path::Path>, &str),
    scratch: &std::path::Path,
    runs: usize,
    long_ms: f64,
) -> Result<Vec<Row>> {
    let (model_path, prompt) = model;
    let mut rows = Vec::new();
    for frames in ["all", "2"] {
        let out = scratch.join("process");
        let (t, _) = measure(1, runs, long_ms, || {
            let mut cmd = std::process::Command::new(exe);
            cmd.arg("generate");
            if let Some(path) = model_path {
                cmd.arg("--model").arg(path);
            }
            let status = cmd
                .args(["--prompt", prompt, "--num-images", "1", "--seed", "0"])
                .args(["--frames", frames])
                .arg("--out")
                .arg(&out)
                .args(["--force", "--quiet"])
                .stdout(std::process::Stdio::null())
                .status()
                .map_err(|e| Error::Process {
                    what: format!("cannot run {}", exe.display()),
                    reason: e.to_string(),
                })?;
            if !status.success() {
                return Err(Error::Process {
                    what: format!("{} generate", exe.display()),
                    reason: format!("failed ({status})"),
                });
            }
            Ok(())
        })?;
        let name = format!(
            "whole process: 1 image, {} steps, guidance {}, --frames {frames}",
            crate::jobs::generate::DEFAULT_STEPS,
            crate::jobs::generate::DEFAULT_GUIDANCE
        );
        rows.push(row("generate", name, t, 1.0, "images/s"));
    }
    Ok(rows)
}
