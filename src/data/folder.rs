//! Image-folder datasets: class subfolders mean conditional training (the prompt is the
//! folder name); a flat folder means unconditional training. Every readable picture is
//! resized (shorter side) and centre-cropped to the model's resolution; unreadable files are
//! skipped and counted.

use std::path::{Path, PathBuf};

use image::imageops::FilterType;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use crate::error::{Error, Reason, Result};
use crate::io::image::{decode, flatten_over_white, to_model_space};
use crate::vocab::{Slot, Vocabulary};

/// Pictures in memory, in model space.
pub struct FolderDataset {
    pub root: PathBuf,
    /// Side of the square images.
    pub size: usize,
    /// `[3, size, size]` in [-1, 1], one per image.
    pub images: Vec<Vec<f32>>,
    /// Class id per image (None for a flat folder).
    pub labels: Vec<Option<u32>>,
    /// Class names (sorted folder names); empty for a flat folder.
    pub classes: Vec<String>,
    /// The file of each image.
    pub files: Vec<PathBuf>,
    /// Files that could not be decoded.
    pub skipped: Vec<PathBuf>,
}

fn sorted_entries(dir: &Path) -> Result<Vec<PathBuf>> {
    let rd = std::fs::read_dir(dir).map_err(|e| Error::DataFolder {
        path: dir.to_path_buf(),
        reason: Reason::Because(format!("cannot read it: {e}")),
    })?;
    let mut v: Vec<PathBuf> = rd.flatten().map(|e| e.path()).collect();
    v.sort();
    Ok(v)
}

/// Resizes the shorter side to `size` and crops the centre square, in model space.
fn prepare(path: &Path, size: usize) -> Result<Vec<f32>> {
    let img = flatten_over_white(decode(path)?);
    let (w, h) = (img.width() as f64, img.height() as f64);
    let scale = size as f64 / w.min(h);
    let (nw, nh) = (
        ((w * scale).round() as u32).max(size as u32),
        ((h * scale).round() as u32).max(size as u32),
    );
    let resized = img.resize_exact(nw, nh, FilterType::Lanczos3);
    let (x0, y0) = ((nw - size as u32) / 2, (nh - size as u32) / 2);
    let cropped = resized.crop_imm(x0, y0, size as u32, size as u32);
    let t = to_model_space(&cropped, &candle_core::Device::Cpu)?;
    Ok(t.flatten_all()?.to_vec1()?)
}

/// Refuses a class folder whose prompt word is empty, an article (it could never be
/// prompted), or the same as an earlier folder's ("Red Fox" and "red-fox").
fn check_class(
    root: &Path,
    name: &str,
    word: &str,
    earlier: &[String],
    earlier_dirs: &[&PathBuf],
) -> Result<()> {
    let fail = |reason: String| Error::DataFolder {
        path: root.to_path_buf(),
        reason: Reason::Because(reason),
    };
    if word.is_empty() || ["a", "an", "the"].contains(&word) {
        return Err(fail(format!(
            "class folder '{name}' gives the prompt word '{word}', which a prompt cannot name; rename the folder"
        )));
    }
    if let Some(i) = earlier.iter().position(|w| w == word) {
        let other = earlier_dirs[i]
            .file_name()
            .unwrap_or_default()
            .to_string_lossy();
        return Err(fail(format!(
            "class folders '{other}' and '{name}' both give the prompt word '{word}'; rename or merge them"
        )));
    }
    Ok(())
}

impl FolderDataset {
    /// Scans `root`: subfolders are classes; with none, the files in `root` are one
    /// unconditional set.
    pub fn load(root: &Path, size: usize) -> Result<Self> {
        let meta = std::fs::metadata(root).map_err(|e| Error::DataFolder {
            path: root.to_path_buf(),
            reason: Reason::Because(e.to_string()),
        })?;
        if !meta.is_dir() {
            return Err(Error::DataFolder {
                path: root.to_path_buf(),
                reason: Reason::Is("is not a folder".into()),
            });
        }
        let entries = sorted_entries(root)?;
        let subdirs: Vec<&PathBuf> = entries.iter().filter(|p| p.is_dir()).collect();
        let mut groups: Vec<(Option<u32>, Vec<PathBuf>)> = Vec::new();
        let mut classes = Vec::new();
        if subdirs.is_empty() {
            groups.push((
                None,
                entries.iter().filter(|p| p.is_file()).cloned().collect(),
            ));
        } else {
            for (i, d) in subdirs.iter().enumerate() {
                // The prompt word: lower case, spaces and commas as hyphens, because prompts
                // are lower-cased and split there ("Red apple" is prompted as "red-apple").
                let name = d.file_name().unwrap_or_default().to_string_lossy();
                let word: String = name
                    .to_lowercase()
                    .split(|c: char| c.is_whitespace() || c == ',')
                    .filter(|w| !w.is_empty())
                    .collect::<Vec<_>>()
                    .join("-");
                check_class(root, &name, &word, &classes, &subdirs[..i])?;
                classes.push(word);
                let files = sorted_entries(d)?
                    .into_iter()
                    .filter(|p| p.is_file())
                    .collect();
                groups.push((Some(i as u32), files));
            }
        }
        let mut ds = FolderDataset {
            root: root.to_path_buf(),
            size,
            images: Vec::new(),
            labels: Vec::new(),
            classes,
            files: Vec::new(),
            skipped: Vec::new(),
        };
        for (label, files) in groups {
            for f in files {
                match prepare(&f, size) {
                    Ok(x) => {
                        ds.images.push(x);
                        ds.labels.push(label);
                        ds.files.push(f);
                    }
                    Err(_) => ds.skipped.push(f),
                }
            }
        }
        if ds.images.is_empty() {
            return Err(Error::DataFolder {
                path: root.to_path_buf(),
                reason: Reason::Is(format!(
                    "has no usable image ({} files skipped)",
                    ds.skipped.len()
                )),
            });
        }
        Ok(ds)
    }

    /// The vocabulary a model trained on this folder carries: one `class` slot with the
    /// folder names, or no slot for a flat folder.
    pub fn vocabulary(&self) -> Vocabulary {
        if self.classes.is_empty() {
            Vocabulary { slots: vec![] }
        } else {
            Vocabulary {
                slots: vec![Slot {
                    name: "class".into(),
                    words: self.classes.clone(),
                }],
            }
        }
    }

    /// The image indices of `count` consecutive draws starting at draw `start`: each epoch
    /// visits every image once in an order shuffled by (seed, epoch).
    pub fn indices(&self, seed: u64, start: u64, count: usize) -> Vec<usize> {
        let n = self.images.len() as u64;
        let mut out = Vec::with_capacity(count);
        let mut perm: Option<(u64, Vec<usize>)> = None;
        for k in start..start + count as u64 {
            let epoch = k / n;
            if perm.as_ref().is_none_or(|p| p.0 != epoch) {
                let mut order: Vec<usize> = (0..n as usize).collect();
                let mut r = ChaCha8Rng::seed_from_u64(seed);
                r.set_stream(epoch);
                order.shuffle(&mut r);
                perm = Some((epoch, order));
            }
            out.push(perm.as_ref().expect("set above").1[(k % n) as usize]);
        }
        out
    }
}
