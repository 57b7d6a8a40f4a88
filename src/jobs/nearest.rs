//! `diffuse nearest`: the training scenes nearest to a picture (resized as img2img does),
//! searched over the model's exact training stream, as one picture (the query next to its
//! neighbours, each with its caption and distance) and a report.

use std::path::{Path, PathBuf};
use std::time::Instant;

use image::RgbImage;
use serde::Serialize;

use crate::data::emoji;
use crate::error::{Error, Result};
use crate::io::fs;
use crate::model::LoadedModel;
use crate::nearest::folder::{FolderPictures, Searched};
use crate::nearest::{DataStream, Neighbour, MAX_TOP};
use crate::progress::Progress;
use crate::render;

/// What `diffuse nearest` was asked to do.
pub struct NearestOptions {
    pub image: PathBuf,
    pub top: usize,
    /// The picture to write.
    pub out: PathBuf,
    pub force: bool,
    /// The prompt the picture was drawn for: a held-out pair is named as such.
    pub prompt: Option<String>,
    /// Search the pictures of this folder instead of the model's recorded stream (a model
    /// trained on an image folder records none).
    pub folder: Option<PathBuf>,
}

/// What the search found.
#[derive(Debug, Serialize)]
pub struct NearestReport {
    pub image: PathBuf,
    pub model: String,
    /// The training stream searched, or the folder.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stream: Option<DataStream>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub folder: Option<PathBuf>,
    /// Scenes searched: every scene of every training step, or every picture of the folder.
    pub searched: u64,
    /// The distance: RMS of the 8-bit difference at the model's resolution, in [0, 1].
    pub distance: &'static str,
    pub neighbours: Vec<Neighbour>,
    /// For a prompt whose two nouns are a held-out pair: no training scene holds both.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub held_out: Option<String>,
    pub out: PathBuf,
    pub seconds: f64,
}

/// The distance as the report states it.
pub const DISTANCE: &str = "RMS of the 8-bit RGB difference at the model's resolution, in [0, 1]";

/// The model's recorded stream, or a one-line error naming what it lacks.
pub fn stream_of(model: &LoadedModel) -> Result<DataStream> {
    model.meta.data.ok_or_else(|| Error::File {
        name: model.name.clone(),
        reason: "records no procedural training stream (a diffusers folder, a model trained on an image folder, or one written before diffuse recorded it), so there is no exact training set to search; for folder data, `diffuse nearest --data FOLDER` searches the folder".into(),
    })
}

/// The nouns of `prompt`'s held-out pair, as a sentence; None when it has no such pair.
fn held_out_note(prompt: &str) -> Option<String> {
    let words = crate::text::tokenizer::words(prompt);
    let nouns: Vec<usize> = words.iter().filter_map(|w| emoji::noun_index(w)).collect();
    match nouns.as_slice() {
        [a, b] if emoji::is_held_out(*a, *b) => Some(format!(
            "\"{}\" and \"{}\" are a held-out pair: no training scene holds both",
            emoji::NOUNS[*a].name,
            emoji::NOUNS[*b].name
        )),
        _ => None,
    }
}

/// The query over its neighbours, each labelled with its caption and distance.
fn picture(query: &RgbImage, found: &[Neighbour], searched: &Searched) -> Result<RgbImage> {
    let row = neighbour_row(query, found, searched)?;
    let what = match searched {
        Searched::Stream(_) => "training scenes",
        Searched::Folder(_) => "pictures of the folder",
    };
    let title = format!(
        "nearest of the {} {what} (distance: RMS in [0, 1])",
        searched.len()
    );
    Ok(render::labelled_rows(&title, &[(String::new(), row)]))
}

/// Checks a neighbour count.
pub fn check_top(k: usize) -> Result<()> {
    match k {
        1..=MAX_TOP => Ok(()),
        _ => Err(Error::out_of_range("nearest", k, format!("1..={MAX_TOP}"))),
    }
}

/// `generate --nearest K`: each sample of `x` `[N, 3, S, S]` in a row with its `k` nearest
/// training scenes, saved at `path`; returns the neighbours.
pub fn panel(
    model: &LoadedModel,
    x: &candle_core::Tensor,
    k: usize,
    path: &Path,
    progress: &dyn Progress,
) -> Result<Vec<Vec<Neighbour>>> {
    let stream = Searched::Stream(stream_of(model)?);
    let samples = (0..x.dim(0)?)
        .map(|i| render::to_rgb8(&x.get(i)?))
        .collect::<Result<Vec<_>>>()?;
    progress.stage("searching the training scenes", stream.len());
    let found = stream.search(&samples, k, |n| progress.advance(n))?;
    progress.finish();
    let rows = samples
        .iter()
        .zip(&found)
        .enumerate()
        .map(|(i, (q, f))| Ok((format!("sample {i}"), neighbour_row(q, f, &stream)?)))
        .collect::<Result<Vec<_>>>()?;
    let title = format!("Is it new? The nearest of {} training scenes", stream.len());
    render::save_png(&render::labelled_rows(&title, &rows), path)?;
    Ok(found)
}

/// A query and its neighbours side by side, each labelled.
fn neighbour_row(query: &RgbImage, found: &[Neighbour], searched: &Searched) -> Result<RgbImage> {
    let scale = render::frame::default_scale(query.width() as usize).min(4);
    let mut tiles = vec![render::upscale(query, scale)];
    let mut labels = vec!["the picture".to_string()];
    for n in found {
        tiles.push(render::upscale(&searched.picture(n.index), scale));
        labels.push(format!("#{} {} ({:.3})", n.index, n.caption, n.distance));
    }
    let refs: Vec<&RgbImage> = tiles.iter().collect();
    Ok(render::grid(&refs, refs.len(), 6, Some(&labels)))
}

/// Searches the model's stream for the picture's nearest scenes and writes the picture.
pub fn run(
    model: &LoadedModel,
    opts: &NearestOptions,
    progress: &dyn Progress,
) -> Result<NearestReport> {
    let began = Instant::now();
    let searched = match &opts.folder {
        Some(f) => Searched::Folder(FolderPictures::load(f, model.picture_size() as u32)?),
        None => Searched::Stream(stream_of(model)?),
    };
    fs::check_overwrite(&opts.out, opts.force)?;
    check_png(&opts.out)?;
    let loaded = model.load_picture(&opts.image)?; // its centred square at the model's side
    if let Some(note) = loaded.crop_note(&opts.image) {
        progress.note(&note);
    }
    let query = render::to_rgb8(&loaded.x0)?;
    progress.stage("searching", searched.len());
    let queries = std::slice::from_ref(&query);
    let found = searched.search(queries, opts.top, |n| progress.advance(n))?;
    let found = found.into_iter().next().unwrap_or_default();
    let img = picture(&query, &found, &searched)?;
    render::save_png(&img, &opts.out)?;
    let (stream, folder) = match &searched {
        Searched::Stream(s) => (Some(*s), None),
        Searched::Folder(f) => (None, Some(f.root.clone())),
    };
    Ok(NearestReport {
        image: opts.image.clone(),
        model: model.name.clone(),
        searched: searched.len(),
        stream,
        folder,
        distance: DISTANCE,
        neighbours: found,
        held_out: opts.prompt.as_deref().and_then(held_out_note),
        out: opts.out.clone(),
        seconds: began.elapsed().as_secs_f64(),
    })
}

fn check_png(out: &Path) -> Result<()> {
    match out.extension().and_then(|e| e.to_str()) {
        Some(e) if e.eq_ignore_ascii_case("png") => Ok(()),
        _ => Err(Error::option_is(
            "out",
            out.display(),
            "must name a .png file (the query next to its nearest training scenes)",
        )),
    }
}
