//! An in-memory index of a training stream for answering one query in about a second (the
//! playground's "Is it new?" button): the 8×8-cell block sums of every scene, 384 bytes a
//! scene (74 MB for emoji64's 192,000). A query's lower bound (the RMS difference of block
//! means, see [`super::lower_bound`]) is computed for every scene; scenes are then checked
//! exactly, re-rendered, nearest bound first, until the bound passes the k-th distance found,
//! so the answer is the full search's.

use std::sync::atomic::{AtomicU64, Ordering};

use image::RgbImage;
use rayon::prelude::*;

use super::{distance, insert, DataStream, Neighbour};
use crate::error::Result;

/// Cells per side of the index's block sums.
const CELLS: u32 = 8;

/// A stream's block sums, built once.
pub struct Index {
    pub stream: DataStream,
    /// Per scene, CELLS² × 3 block sums (at most 255 · (side / CELLS)² each).
    sums: Vec<u16>,
    /// Pixels per cell.
    per_cell: f32,
}

/// CELLS² × 3 block sums of an 8-bit RGB picture, channels interleaved.
fn block_sums(img: &RgbImage, out: &mut [u16]) {
    let f = img.width() / CELLS;
    out.iter_mut().for_each(|v| *v = 0);
    for (x, y, p) in img.enumerate_pixels() {
        let cell = (((y / f).min(CELLS - 1) * CELLS + (x / f).min(CELLS - 1)) * 3) as usize;
        for c in 0..3 {
            out[cell + c] += p.0[c] as u16;
        }
    }
}

const PER_SCENE: usize = (CELLS * CELLS * 3) as usize;

impl Index {
    /// Renders every scene of `stream` once; `built` counts the scenes done (for a status
    /// line while it builds).
    pub fn build(stream: DataStream, built: &AtomicU64) -> Self {
        let n = stream.len();
        let chunk = 4096u64;
        let mut sums = vec![0u16; n as usize * PER_SCENE];
        sums.par_chunks_mut(chunk as usize * PER_SCENE)
            .enumerate()
            .for_each(|(c, out)| {
                let start = c as u64 * chunk;
                let count = out.len() / PER_SCENE;
                for (i, scene) in stream.pictures(start, count).into_iter().enumerate() {
                    block_sums(&scene.picture, &mut out[i * PER_SCENE..][..PER_SCENE]);
                }
                built.fetch_add(count as u64, Ordering::Relaxed);
            });
        let f = stream.side() / CELLS;
        Self {
            stream,
            sums,
            per_cell: (f * f) as f32,
        }
    }

    /// Bytes the index holds.
    pub fn bytes(&self) -> usize {
        self.sums.len() * 2
    }

    /// The `k` nearest scenes to `query` (8-bit RGB at the stream's side), exactly as
    /// [`super::search`] finds them.
    pub fn search(&self, query: &RgbImage, k: usize) -> Result<Vec<Neighbour>> {
        super::check_queries(&self.stream, std::slice::from_ref(query), k)?;
        let mut q = [0u16; PER_SCENE];
        block_sums(query, &mut q);
        let qm: Vec<f32> = q.iter().map(|&v| v as f32 / self.per_cell).collect();
        let mut bounds: Vec<(f64, u64)> = self
            .sums
            .par_chunks(PER_SCENE)
            .enumerate()
            .map(|(i, s)| {
                let sm: Vec<f32> = s.iter().map(|&v| v as f32 / self.per_cell).collect();
                (super::lower_bound(&qm, &sm), i as u64)
            })
            .collect();
        bounds.par_sort_unstable_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
        let mut top: Vec<(f64, u64)> = Vec::with_capacity(k + 1);
        for &(bound, index) in &bounds {
            if top.len() == k && bound > top[k - 1].0 + 1e-9 {
                break;
            }
            let scene = self.stream.scene(index);
            insert(
                &mut top,
                k,
                distance(query.as_raw(), scene.picture.as_raw()),
                index,
            );
        }
        Ok(top
            .into_iter()
            .map(|(distance, index)| Neighbour {
                index,
                step: Some(index / self.stream.batch_size as u64),
                distance,
                caption: self.stream.scene(index).caption,
            })
            .collect())
    }
}
