//! `diffuse data`: training data written out to look at. The shapes dataset's images stream
//! to disk in batches, so memory does not grow with `--count`.

use std::path::Path;

use rayon::prelude::*;

use crate::data::shapes;
use crate::error::{Error, Result};
use crate::io::fs;
use crate::progress::Progress;
use crate::render;

/// Images written by default.
pub const DEFAULT_COUNT: usize = 64;
/// The most images one call writes.
pub const MAX_COUNT: usize = 1_000_000;
/// Images drawn and written per batch.
const BATCH: usize = 256;

/// `diffuse data shapes`: writes `count` images named `{index}_{colour}_{shape}.png` and a
/// preview grid of the first 64.
pub fn write_shapes(
    seed: u64,
    count: usize,
    out: &Path,
    force: bool,
    progress: &dyn Progress,
) -> Result<usize> {
    if count == 0 {
        return Err(Error::option("count", 0, "write at least one image"));
    }
    if count > MAX_COUNT {
        return Err(Error::out_of_range(
            "count",
            count,
            format!("1..={MAX_COUNT}"),
        ));
    }
    fs::prepare_output_dir(out, force)?;
    progress.stage("drawing shapes", count as u64);
    let mut preview = Vec::new();
    for first in (0..count).step_by(BATCH) {
        let items = shapes::render_range(seed, first as u64, BATCH.min(count - first));
        items
            .par_iter()
            .enumerate()
            .try_for_each(|(j, (spec, img))| {
                let (c, s) = spec.label();
                let i = first + j;
                render::save_png(img, &out.join(format!("{i:06}_{c}_{s}.png")))?;
                progress.advance(1);
                Ok::<_, Error>(())
            })?;
        preview.extend(
            items
                .into_iter()
                .take(64 - preview.len().min(64))
                .map(|(_, i)| i),
        );
    }
    progress.finish();
    let refs: Vec<&image::RgbImage> = preview.iter().collect();
    render::save_png(&render::grid(&refs, 8, 2, None), &out.join("preview.png"))?;
    Ok(count)
}
