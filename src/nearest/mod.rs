//! "Is it new?": the training scenes nearest to a picture, searched over the exact stream a
//! model was trained on. diffuse's data is procedural and seeded, so the stream (scene
//! `step · batch + i` of the data seed, for every step the model took) is regenerated here by
//! the same function the trainer's loader calls ([`DataStream::pictures`]), as the
//! memorisation studies do by nearest-neighbour search (Carlini et al. 2023; Somepalli et al.
//! 2023). The distance is the RMS difference of the 8-bit pictures at the model's resolution,
//! in [0, 1] (0: the same picture). Many queries share one pass over the stream.

pub mod folder;
pub mod index;

use std::cmp::Ordering;

use image::RgbImage;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::data::{emoji, shapes};
use crate::error::{Error, Result};

/// The most neighbours a query may ask for.
pub const MAX_TOP: usize = 64;
/// The most queries one pass takes.
pub const MAX_QUERIES: usize = 4096;
/// Scenes regenerated per parallel chunk of the pass.
const CHUNK: u64 = 4096;

/// Which procedural dataset a stream draws from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StreamData {
    Emoji,
    Shapes,
}

/// The exact training stream of a model: every scene of its `steps` batches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct DataStream {
    pub data: StreamData,
    pub data_seed: u64,
    pub batch_size: usize,
    pub steps: u64,
}

/// A training scene: its index in the stream, and what it shows.
#[derive(Debug, Clone)]
pub struct Scene {
    pub index: u64,
    pub caption: String,
    /// The nouns of an emoji scene (empty for shapes).
    pub nouns: Vec<usize>,
    pub picture: RgbImage,
}

impl DataStream {
    /// How many scenes the model saw.
    pub fn len(&self) -> u64 {
        self.steps * self.batch_size as u64
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The picture side of the stream's scenes.
    pub fn side(&self) -> u32 {
        match self.data {
            StreamData::Emoji => emoji::SIZE,
            StreamData::Shapes => shapes::SIZE,
        }
    }

    /// Scenes `start..start + count` of the data seed: what the trainer's loader draws for a
    /// batch (it calls this with `start = step · batch`).
    pub fn pictures(&self, start: u64, count: usize) -> Vec<Scene> {
        match self.data {
            StreamData::Emoji => emoji::render_range(self.data_seed, start, count)
                .into_iter()
                .enumerate()
                .map(|(i, (s, picture))| Scene {
                    index: start + i as u64,
                    caption: s.caption(),
                    nouns: s.objects.iter().map(|o| o.noun).collect(),
                    picture,
                })
                .collect(),
            StreamData::Shapes => shapes::render_range(self.data_seed, start, count)
                .into_iter()
                .enumerate()
                .map(|(i, (s, picture))| Scene {
                    index: start + i as u64,
                    caption: format!(
                        "a {} {}",
                        shapes::COLOURS[s.colour].0,
                        shapes::Shape::ALL[s.shape].name()
                    ),
                    nouns: Vec::new(),
                    picture,
                })
                .collect(),
        }
    }

    /// The one scene at `index`.
    pub fn scene(&self, index: u64) -> Scene {
        self.pictures(index, 1).remove(0)
    }
}

/// One neighbour of a query.
#[derive(Debug, Clone, Serialize)]
pub struct Neighbour {
    /// Its index in the stream (in a folder: in the folder's sorted order), and the training
    /// step that drew it (none for a folder, whose pictures every epoch draws).
    pub index: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub step: Option<u64>,
    pub distance: f64,
    pub caption: String,
}

/// The RMS difference of two same-sized 8-bit pictures, in [0, 1].
pub fn distance(a: &[u8], b: &[u8]) -> f64 {
    let sum: u64 = a
        .iter()
        .zip(b)
        .map(|(&x, &y)| {
            let d = x.abs_diff(y) as u64;
            d * d
        })
        .sum();
    (sum as f64 / a.len().max(1) as f64).sqrt() / 255.0
}

/// The side of the block means the search prunes with.
const COARSE_SIDE: u32 = 16;

/// Block means of an 8-bit RGB picture over `COARSE_SIDE`² blocks, channels interleaved.
fn coarse(img: &RgbImage) -> Vec<f32> {
    let f = (img.width() / COARSE_SIDE).max(1);
    let side = img.width() / f;
    let mut out = vec![0f32; (side * side * 3) as usize];
    for (x, y, p) in img.enumerate_pixels() {
        let cell = (((y / f).min(side - 1) * side + (x / f).min(side - 1)) * 3) as usize;
        for c in 0..3 {
            out[cell + c] += p.0[c] as f32;
        }
    }
    let n = (f * f) as f32;
    out.iter_mut().for_each(|v| *v /= n);
    out
}

/// The RMS difference of block means, in [0, 1]: never more than [`distance`] of the
/// pictures themselves (a block's mean difference squared is at most its mean squared
/// difference), so a scene whose bound is no nearer than the k-th best so far is skipped
/// without changing the result.
pub(crate) fn lower_bound(a: &[f32], b: &[f32]) -> f64 {
    let sum: f64 = a
        .iter()
        .zip(b)
        .map(|(&x, &y)| ((x - y) as f64).powi(2))
        .sum();
    (sum / a.len().max(1) as f64).sqrt() / 255.0
}

/// Keeps the `k` nearest so far, nearest first; ties go to the earlier index.
pub(crate) fn insert(top: &mut Vec<(f64, u64)>, k: usize, d: f64, index: u64) {
    let pos = top.partition_point(|&(e, i)| e < d || (e == d && i < index));
    if pos < k {
        top.insert(pos, (d, index));
        top.truncate(k);
    }
}

fn by_distance(a: &(f64, u64), b: &(f64, u64)) -> Ordering {
    a.0.total_cmp(&b.0).then(a.1.cmp(&b.1))
}

/// The `k` nearest scenes of `stream` to each query (8-bit RGB at the stream's side), in one
/// pass over the stream; `progress(n)` is called as each n more scenes are searched.
pub fn search(
    stream: &DataStream,
    queries: &[RgbImage],
    k: usize,
    progress: impl Fn(u64) + Sync,
) -> Result<Vec<Vec<Neighbour>>> {
    check_queries(stream, queries, k)?;
    let n = stream.len();
    let chunks: Vec<u64> = (0..n.div_ceil(CHUNK)).collect();
    let coarse_queries: Vec<Vec<f32>> = queries.iter().map(coarse).collect();
    let tops = chunks
        .par_iter()
        .map(|&c| {
            let (start, count) = (c * CHUNK, CHUNK.min(n - c * CHUNK) as usize);
            let mut tops: Vec<Vec<(f64, u64)>> = vec![Vec::with_capacity(k + 1); queries.len()];
            for scene in stream.pictures(start, count) {
                let cs = coarse(&scene.picture);
                for ((q, cq), top) in queries.iter().zip(&coarse_queries).zip(&mut tops) {
                    if top.len() == k && lower_bound(cq, &cs) > top[k - 1].0 + 1e-9 {
                        continue;
                    }
                    let d = distance(q.as_raw(), scene.picture.as_raw());
                    insert(top, k, d, scene.index);
                }
            }
            progress(count as u64);
            tops
        })
        .reduce(
            || vec![Vec::new(); queries.len()],
            |mut a, b| {
                for (x, y) in a.iter_mut().zip(b) {
                    x.extend(y);
                    x.sort_by(by_distance);
                    x.truncate(k);
                }
                a
            },
        );
    Ok(tops
        .into_iter()
        .map(|top| {
            top.into_iter()
                .map(|(distance, index)| Neighbour {
                    index,
                    step: Some(index / stream.batch_size as u64),
                    distance,
                    caption: stream.scene(index).caption,
                })
                .collect()
        })
        .collect())
}

pub(crate) fn check_queries(stream: &DataStream, queries: &[RgbImage], k: usize) -> Result<()> {
    if k == 0 || k > MAX_TOP {
        return Err(Error::out_of_range("top", k, format!("1..={MAX_TOP}")));
    }
    if queries.is_empty() || queries.len() > MAX_QUERIES {
        let range = format!("1..={MAX_QUERIES}");
        return Err(Error::out_of_range("queries", queries.len(), range));
    }
    let side = stream.side();
    if let Some(q) = queries.iter().find(|q| q.dimensions() != (side, side)) {
        return Err(Error::Unsupported(format!(
            "a query is {}x{}, but the training scenes are {side}x{side}",
            q.width(),
            q.height()
        )));
    }
    if stream.is_empty() {
        return Err(Error::Unsupported(
            "the model was trained for 0 steps: no scene to search".into(),
        ));
    }
    Ok(())
}

/// Whether the nouns `a` and `b` never appear together in the emoji training stream (a
/// held-out pair): then no training scene holds both.
pub fn held_out(a: usize, b: usize) -> bool {
    emoji::is_held_out(a, b)
}
