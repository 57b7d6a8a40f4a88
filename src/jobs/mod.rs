//! Whole commands as library calls, one file per verb: each checks its options, wires the
//! math to image I/O, and reports progress through [`crate::progress::Progress`], so the CLI
//! only parses flags and draws bars.

pub mod autoencoder;
pub mod compare;
pub mod copy_rate;
pub mod data;
pub mod eval;
pub mod eval_emoji;
pub mod generate;
pub mod interpolate;
pub mod invert;
pub mod nearest;
pub mod noise;
pub mod noise_file;
pub mod train;
pub mod train_preview;

use std::path::Path;

use serde::Serialize;

use crate::error::{Error, Result};
use crate::io::fs;

/// Paths in reports, written lossily: a path that is not UTF-8 still gets recorded (with
/// U+FFFD where its bytes are not text) instead of failing the run at its very end.
pub mod lossy {
    use std::path::{Path, PathBuf};

    use serde::Serializer;

    pub fn path<S: Serializer>(p: &Path, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&p.to_string_lossy())
    }

    pub fn opt_path<S: Serializer>(p: &Option<PathBuf>, s: S) -> Result<S::Ok, S::Error> {
        match p {
            Some(p) => s.serialize_some(&p.to_string_lossy()),
            None => s.serialize_none(),
        }
    }
}

/// Writes a job's report as `run.json` in `out`, atomically (pretty-printed JSON).
/// `n` and the noun, plural unless `n` is 1: "1 step", "20 steps".
pub fn count(n: u64, noun: &str) -> String {
    match n {
        1 => format!("1 {noun}"),
        _ => format!("{n} {noun}s"),
    }
}

pub fn write_run_json<R: Serialize>(out: &Path, report: &R) -> Result<()> {
    let json = serde_json::to_vec_pretty(report).map_err(|e| Error::Encode {
        format: "JSON",
        reason: e.to_string(),
    })?;
    fs::write_atomic(&out.join("run.json"), &json)
}

/// Milliseconds since `since`.
pub(crate) fn ms(since: std::time::Instant) -> f64 {
    since.elapsed().as_secs_f64() * 1e3
}
