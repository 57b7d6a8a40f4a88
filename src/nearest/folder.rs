//! "Is it new?" for pictures from a folder (a model trained on an image folder records no
//! procedural stream): the folder's pictures, prepared as the trainer prepares them (the
//! shorter side resized to the model's, the centre cropped), searched with the same distance.

use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};
use image::RgbImage;
use rayon::prelude::*;

use super::{distance, insert, DataStream, Neighbour, MAX_QUERIES, MAX_TOP};
use crate::data::folder::FolderDataset;
use crate::error::{Error, Result};

/// A folder's pictures at a model's side, with their captions.
pub struct FolderPictures {
    pub root: PathBuf,
    pub pictures: Vec<RgbImage>,
    /// The class (subfolder) and file name of each picture.
    pub captions: Vec<String>,
}

impl FolderPictures {
    /// Reads every usable picture of `root` (class subfolders or flat) at `side` pixels.
    pub fn load(root: &Path, side: u32) -> Result<Self> {
        let ds = FolderDataset::load(root, side as usize)?;
        let s = side as usize;
        let pictures = (ds.images.iter())
            .map(|x| crate::render::to_rgb8(&Tensor::from_slice(x, (3, s, s), &Device::Cpu)?))
            .collect::<Result<Vec<_>>>()?;
        let captions = (ds.files.iter().zip(&ds.labels))
            .map(|(f, label)| {
                let name = f.file_name().unwrap_or_default().to_string_lossy();
                match label {
                    Some(c) => format!("{} ({name})", ds.classes[*c as usize]),
                    None => name.into_owned(),
                }
            })
            .collect();
        Ok(Self {
            root: ds.root,
            pictures,
            captions,
        })
    }

    /// The `k` nearest pictures to each query, nearest first.
    pub fn search(&self, queries: &[RgbImage], k: usize) -> Result<Vec<Vec<Neighbour>>> {
        if k == 0 || k > MAX_TOP {
            return Err(Error::out_of_range("top", k, format!("1..={MAX_TOP}")));
        }
        if queries.is_empty() || queries.len() > MAX_QUERIES {
            let range = format!("1..={MAX_QUERIES}");
            return Err(Error::out_of_range("queries", queries.len(), range));
        }
        Ok(queries
            .par_iter()
            .map(|q| {
                let mut top = Vec::with_capacity(k + 1);
                for (i, p) in self.pictures.iter().enumerate() {
                    insert(&mut top, k, distance(q.as_raw(), p.as_raw()), i as u64);
                }
                (top.into_iter())
                    .map(|(distance, i)| Neighbour {
                        index: i,
                        step: None,
                        distance,
                        caption: self.captions[i as usize].clone(),
                    })
                    .collect()
            })
            .collect())
    }
}

/// What a search looks through: a model's exact procedural stream, or a folder's pictures.
pub enum Searched {
    Stream(DataStream),
    Folder(FolderPictures),
}

impl Searched {
    /// How many pictures it holds.
    pub fn len(&self) -> u64 {
        match self {
            Searched::Stream(s) => s.len(),
            Searched::Folder(f) => f.pictures.len() as u64,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The picture at `index`.
    pub fn picture(&self, index: u64) -> RgbImage {
        match self {
            Searched::Stream(s) => s.scene(index).picture,
            Searched::Folder(f) => f.pictures[index as usize].clone(),
        }
    }

    /// The `k` nearest to each query; `progress(n)` as n more pictures are searched.
    pub fn search(
        &self,
        queries: &[RgbImage],
        k: usize,
        progress: impl Fn(u64) + Sync,
    ) -> Result<Vec<Vec<Neighbour>>> {
        match self {
            Searched::Stream(s) => super::search(s, queries, k, progress),
            Searched::Folder(f) => {
                let found = f.search(queries, k)?;
                progress(f.pictures.len() as u64);
                Ok(found)
            }
        }
    }
}
