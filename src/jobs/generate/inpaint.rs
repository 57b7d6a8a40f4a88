//! `diffuse inpaint`'s inputs: the picture and its mask at the model's resolution, checked
//! before anything runs (white = repaint, gray above 50 % counts as white).

use std::path::{Path, PathBuf};

use candle_core::Tensor;
use image::imageops::FilterType;
use serde::Serialize;

use crate::edit::inpaint::{InpaintMethod, Known};
use crate::edit::repaint::{DEFAULT_JUMP_LENGTH, DEFAULT_JUMP_N_SAMPLE};
use crate::error::{Error, Result};
use crate::io::image::{decode, flatten_over_white};
use crate::model::LoadedModel;

/// What `diffuse inpaint` repaints and how.
#[derive(Debug, Clone, Serialize)]
pub struct InpaintSpec {
    #[serde(serialize_with = "crate::jobs::lossy::path")]
    pub image: PathBuf,
    /// White where the picture is repainted, black where it is kept.
    #[serde(serialize_with = "crate::jobs::lossy::path")]
    pub mask: PathBuf,
    /// Swap the two: repaint where the mask is black.
    pub invert_mask: bool,
    pub method: InpaintMethod,
    /// RePaint's `jump_length` and `jump_n_sample` (diffusers' names).
    pub jump_length: usize,
    pub jump_n_sample: usize,
}

impl InpaintSpec {
    /// Replace-method inpainting of `image` under `mask` with diffusers' RePaint defaults.
    pub fn new(image: PathBuf, mask: PathBuf) -> Self {
        Self {
            image,
            mask,
            invert_mask: false,
            method: InpaintMethod::Replace,
            jump_length: DEFAULT_JUMP_LENGTH,
            jump_n_sample: DEFAULT_JUMP_N_SAMPLE,
        }
    }
}

/// The loaded inputs of an inpainting run.
pub(super) struct InpaintPlan {
    /// The picture `[1, 3, S, S]` and the keep mask `[1, 1, S, S]`.
    pub(super) known: Known,
    /// Per pixel (row-major, S×S): repainted.
    pub(super) repaint: Vec<bool>,
    /// The share of pixels repainted.
    pub(super) share: f64,
    pub(super) method: InpaintMethod,
    /// A latent model's picture and mask in pixel space `[1, 3, S, S]` / `[1, 1, S, S]`
    /// (`known` then holds its latents and the mask at the latent side): the kept pixels of
    /// the output are pasted back from it at the end.
    pub(super) pixels: Option<Known>,
}

/// Loads the picture and the mask at the model's side S; refuses a mask whose shape cannot
/// be matched to the picture's, and masks that repaint everything or nothing.
pub(super) fn load(
    model: &LoadedModel,
    spec: &InpaintSpec,
    notes: &mut Vec<String>,
) -> Result<InpaintPlan> {
    let side = model.picture_size() as u32;
    let picture = model.load_picture(&spec.image)?;
    notes.extend(picture.crop_note(&spec.image));
    let repaint = load_mask(&spec.mask, picture.original_size, side, spec.invert_mask)?;
    let share = repaint.iter().filter(|r| **r).count() as f64 / repaint.len() as f64;
    let mask_err = |reason: &str| Error::file(&spec.mask, reason);
    if share == 0.0 {
        return Err(mask_err(
            "repaints nothing: it has no white (above 50 % gray) pixel at the model's resolution, so the output would be the picture itself (white marks what to repaint; see --invert-mask)",
        ));
    }
    if share == 1.0 {
        return Err(mask_err(
            "repaints everything: it is all white at the model's resolution, which is plain generation (use diffuse generate; black marks what to keep)",
        ));
    }
    let keep: Vec<f32> = repaint.iter().map(|r| if *r { 0.0 } else { 1.0 }).collect();
    let s = side as usize;
    let pixels = Known {
        image: picture.x0.unsqueeze(0)?, // [1, 3, S, S]
        keep: Tensor::from_vec(keep, (1, 1, s, s), model.device())?, // [1, 1, S, S]
    };
    let (known, pixels) = match model.vae.is_some() {
        false => (pixels, None),
        true => (latent_known(model, &pixels, &repaint, s)?, Some(pixels)),
    };
    Ok(InpaintPlan {
        known,
        repaint,
        share,
        method: spec.method,
        pixels,
    })
}

/// What a latent model keeps: the picture's latents `[1, 4, h, w]`, and a latent cell kept
/// only where every pixel it covers is kept (so nothing to repaint is held fixed), as
/// diffusers' SD inpainting resizes the mask to the latents.
fn latent_known(model: &LoadedModel, pixels: &Known, repaint: &[bool], s: usize) -> Result<Known> {
    let image = model.encode(&pixels.image)?; // [1, 4, h, w]
    let h = image.dim(2)?;
    let f = s / h;
    let keep: Vec<f32> = (0..h * h)
        .map(|cell| {
            let (cy, cx) = (cell / h, cell % h);
            let any_repaint = (0..f * f).any(|p| repaint[(cy * f + p / f) * s + cx * f + p % f]);
            if any_repaint {
                0.0
            } else {
                1.0
            }
        })
        .collect();
    let keep = Tensor::from_vec(keep, (1, 1, h, h), model.device())?; // [1, 1, h, w]
    Ok(Known { image, keep })
}

/// The mask at `side`×`side`: true where it is white (luma above 50 %), or black with
/// `invert`. Its shape must match the picture's `(width, height)`: the same size, or the
/// same aspect ratio within 1 %.
fn load_mask(path: &Path, picture: (u32, u32), side: u32, invert: bool) -> Result<Vec<bool>> {
    let img = flatten_over_white(decode(path)?);
    let (w, h) = (img.width(), img.height());
    let aspect = |w: u32, h: u32| w as f64 / h as f64;
    if (w, h) != picture && (aspect(w, h) / aspect(picture.0, picture.1) - 1.0).abs() > 0.01 {
        return Err(Error::file(
            path,
            format!(
                "is {w}x{h} but the picture is {}x{}; a mask needs the picture's size or at least its aspect ratio",
                picture.0, picture.1
            ),
        ));
    }
    // The picture's own crop (its aspect ratio is the mask's): the centred square.
    let img = match crate::io::image::centre_square(w, h) {
        Some([x, y, s]) => img.crop_imm(x, y, s, s),
        None => img,
    };
    let luma = img
        .resize_exact(side, side, FilterType::Triangle)
        .to_luma32f();
    Ok(luma.pixels().map(|p| (p.0[0] > 0.5) != invert).collect())
}
