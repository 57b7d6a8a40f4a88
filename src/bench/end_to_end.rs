//! The end-to-end figures of the `diffuse bench` suite: `generate` at 1, 8 and 64 images and
//! 10 to 1000 steps, with frames off and on (cases over a work ceiling are left out and
//! listed), and `diffuse generate` run as its own process, start-up and model loading
//! included, as a user meets it.

use super::cases::GenerateCase;
use super::measure::{measure, row, Budget, Row, SuiteOptions};
use crate::defaults::SamplingDefaults;
use crate::error::{Error, Result};
use crate::model::LoadedModel;
use crate::progress::Progress;

/// The most denoiser work one end-to-end case may take, in GFLOP: 64 images × 1000 steps of
/// the 0.5-GFLOP shapes model (32,000, about 9 minutes here) fits; the same case of a model
/// four times larger is left out, so that a full run stays under about an hour on 2 cores.
pub const MAX_CASE_GFLOP: f64 = 40_000.0;

/// An end-to-end case: (images, steps).
pub type Case = (usize, usize);

/// The end-to-end cases for a model of `gflop` per image, and those left out as over
/// [`MAX_CASE_GFLOP`].
pub fn end_to_end_cases(quick: bool, gflop: f64) -> (Vec<Case>, Vec<Case>) {
    let (images, steps): (&[usize], &[usize]) = if quick {
        (&[1, 8], &[10, 25])
    } else {
        (&[1, 8, 64], &[10, 25, 50, 1000])
    };
    images
        .iter()
        .flat_map(|&k| steps.iter().map(move |&n| (k, n)))
        .partition(|&(k, n)| (k * n) as f64 * gflop <= MAX_CASE_GFLOP)
}

/// End-to-end generation with and without frames, then whole processes; the scratch
/// folder is removed whatever happens. Returns the rows and the cases left out as too large.
pub(super) fn generate(
    model: &LoadedModel,
    opts: &SuiteOptions,
    b: Budget,
    progress: &dyn Progress,
) -> Result<(Vec<Row>, Vec<String>)> {
    let gflop = model.meta.unet.flops_per_image() / 1e9;
    let (cases, skipped) = end_to_end_cases(b.quick, gflop);
    progress.stage("generate", 2 * cases.len() as u64 + 1);
    let scratch = &opts.scratch;
    let mut rows = Vec::new();
    let result = (|| -> Result<()> {
        for &(k, n) in &cases {
            {
                let case = GenerateCase {
                    model,
                    images: k,
                    steps: n,
                    out: scratch.join("generate"),
                };
                for frames in [false, true] {
                    rows.push(generate_row(&case, frames, b)?);
                    progress.advance(1);
                }
            }
        }
        if let Some(exe) = &opts.exe {
            let prompt = super::cases::benchmark_prompt(model);
            let which = (opts.model_path.as_deref(), prompt.as_str());
            rows.extend(whole_process(exe, which, scratch, b.runs, b.long_ms)?);
        }
        Ok(())
    })();
    let _ = std::fs::remove_dir_all(scratch);
    result?;
    progress.finish();
    let skipped = skipped
        .iter()
        .map(|(k, n)| {
            format!(
                "generate {k} images, {n} steps ({:.0} GFLOP, over {MAX_CASE_GFLOP:.0})",
                (k * n) as f64 * gflop
            )
        })
        .collect();
    Ok((rows, skipped))
}

/// One end-to-end case, warmed up by a 2-step run: sampling only, or all frames written.
fn generate_row(case: &GenerateCase, frames: bool, b: Budget) -> Result<Row> {
    let run = |c: &GenerateCase, seed: u64| match frames {
        true => c.generate(seed).map(|_| ()),
        false => c.sample(seed).map(|_| ()),
    };
    let warm = GenerateCase {
        steps: 2,
        out: case.out.clone(),
        ..*case
    };
    run(&warm, 0)?;
    let mut seed = 0;
    let (t, mem) = measure(0, b.runs.min(5), b.long_ms, || {
        seed += 1;
        run(case, seed)
    })?;
    let (k, n) = (case.images, case.steps);
    let name = format!(
        "{k} image{}, {n} steps, {}",
        if k == 1 { "" } else { "s" },
        if frames {
            "all frames written"
        } else {
            "no frames"
        }
    );
    Ok(Row {
        peak_heap_mib: mem,
        ..row("generate", name, t, k as f64, "images/s")
    })
}

/// Wall time of whole `diffuse generate` processes, start-up and model loading included:
/// one image at generate's defaults (the speed target), with all frames and with two.
fn whole_process(
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
            SamplingDefaults::LIBRARY.steps,
            SamplingDefaults::LIBRARY.guidance
        );
        rows.push(row("generate", name, t, 1.0, "images/s"));
    }
    Ok(rows)
}
