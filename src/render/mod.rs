//! Tensors to pictures: model-space tensors to 8-bit RGB, PNG encoding, labelled grids and
//! contact strips, nearest-neighbour upscaling. [`animation`] writes frame sequences (PNG
//! frames, a looping GIF and a strip); [`plot`] draws line charts.

pub mod animation;
pub mod attention;
pub mod frame;
pub mod index;
pub mod latent;
pub mod plot;

use std::path::Path;

use candle_core::{DType, Tensor};
use font8x8::UnicodeFonts;
use image::{ImageEncoder, Rgb, RgbImage};

use crate::error::{Error, Result};
use crate::io::fs;

/// Turns a model-space image `[3, H, W]` into 8-bit RGB: clamp to [-1, 1], then (x+1)·127.5.
pub fn to_rgb8(x: &Tensor) -> Result<RgbImage> {
    let (c, h, w) = x.dims3()?;
    if c != 3 {
        return Err(Error::Shape {
            what: "to_rgb8",
            expected: "an image tensor [3, H, W]",
            got: x.dims().to_vec(),
        });
    }
    // One copy of the planes, [3·H·W], read in H, W, 3 order (no permuted intermediate).
    let chw = x.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?;
    let plane = h * w;
    let byte = |v: f32| ((v.clamp(-1.0, 1.0) + 1.0) * 127.5).round() as u8;
    let bytes = (0..plane)
        .flat_map(|p| [byte(chw[p]), byte(chw[plane + p]), byte(chw[2 * plane + p])])
        .collect();
    // The buffer holds exactly h·w·3 bytes, so from_raw cannot fail.
    RgbImage::from_raw(w as u32, h as u32, bytes).ok_or(Error::Shape {
        what: "to_rgb8",
        expected: "h·w·3 bytes",
        got: vec![h, w, 3],
    })
}

/// Encodes an image as PNG bytes.
pub fn png_bytes(img: &RgbImage) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    image::codecs::png::PngEncoder::new(&mut out)
        .write_image(
            img.as_raw(),
            img.width(),
            img.height(),
            image::ExtendedColorType::Rgb8,
        )
        .map_err(|e| Error::Encode {
            format: "PNG",
            reason: e.to_string(),
        })?;
    Ok(out)
}

/// Writes `img` to `path` as PNG, atomically.
pub fn save_png(img: &RgbImage, path: &Path) -> Result<()> {
    fs::write_atomic(path, &png_bytes(img)?)
}

/// Up to `n` indices spread evenly over `0..len`, first and last included.
pub fn evenly_chosen(len: usize, n: usize) -> Vec<usize> {
    if len == 0 || n == 0 {
        return Vec::new();
    }
    if len <= n {
        return (0..len).collect();
    }
    if n == 1 {
        return vec![0];
    }
    let mut idx: Vec<usize> = (0..n)
        .map(|i| (i as f64 * (len - 1) as f64 / (n - 1) as f64).round() as usize)
        .collect();
    idx.dedup();
    idx
}

const WHITE: Rgb<u8> = Rgb([255, 255, 255]);
const INK: Rgb<u8> = Rgb([20, 20, 20]);

/// Draws `text` with the 8×8 bitmap font, each font pixel a `scale`×`scale` block.
pub fn draw_text(img: &mut RgbImage, text: &str, x0: u32, y0: u32, scale: u32, color: Rgb<u8>) {
    for (ci, ch) in text.chars().enumerate() {
        let glyph = font8x8::BASIC_FONTS.get(ch).unwrap_or([0; 8]);
        for (row, bits) in glyph.iter().enumerate() {
            for col in 0..8u32 {
                if bits & (1 << col) == 0 {
                    continue;
                }
                for dy in 0..scale {
                    for dx in 0..scale {
                        let x = x0 + (ci as u32 * 8 + col) * scale + dx;
                        let y = y0 + row as u32 * scale + dy;
                        if x < img.width() && y < img.height() {
                            img.put_pixel(x, y, color);
                        }
                    }
                }
            }
        }
    }
}

/// Width in pixels of `text` in the 8×8 font at `scale`.
pub fn text_width(text: &str, scale: u32) -> u32 {
    text.chars().count() as u32 * 8 * scale
}

/// Lays `images` out on a grid of `cols` columns with `pad` pixels of white between
/// cells; when `labels` is given, each cell gets its label in a band underneath.
/// Cells take the size of the largest image.
pub fn grid(images: &[&RgbImage], cols: usize, pad: u32, labels: Option<&[String]>) -> RgbImage {
    let cols = cols.max(1);
    let rows = images.len().div_ceil(cols).max(1);
    let img_w = images.iter().map(|i| i.width()).max().unwrap_or(1);
    let img_h = images.iter().map(|i| i.height()).max().unwrap_or(1);
    // Font scale grows with the image so labels stay readable on large frames.
    let scale = (img_w / 128).clamp(1, 4);
    let label_w = labels
        .map(|ls| ls.iter().map(|l| text_width(l, scale)).max().unwrap_or(0))
        .unwrap_or(0);
    let cell_w = img_w.max(label_w + 2);
    let band = if labels.is_some() { 8 * scale + 4 } else { 0 };
    let cell_h = img_h + band;
    let width = cols as u32 * cell_w + (cols as u32 + 1) * pad;
    let height = rows as u32 * cell_h + (rows as u32 + 1) * pad;
    let mut out = RgbImage::from_pixel(width, height, WHITE);
    for (i, img) in images.iter().enumerate() {
        let (r, c) = ((i / cols) as u32, (i % cols) as u32);
        let x = pad + c * (cell_w + pad) + (cell_w - img.width()) / 2;
        let y = pad + r * (cell_h + pad);
        image::imageops::replace(&mut out, *img, x as i64, y as i64);
        if let Some(label) = labels.and_then(|ls| ls.get(i)) {
            let lx = pad + c * (cell_w + pad) + (cell_w - text_width(label, scale)) / 2;
            draw_text(&mut out, label, lx, y + img_h + 2, scale, INK);
        }
    }
    out
}

/// `rows` stacked under `title`, each with its label to its left (a comparison picture).
pub fn labelled_rows(title: &str, rows: &[(String, RgbImage)]) -> RgbImage {
    let ts = 2;
    let label_w = rows
        .iter()
        .map(|(l, _)| text_width(l, ts))
        .max()
        .unwrap_or(0)
        + 16;
    let body_w = rows.iter().map(|(_, r)| r.width()).max().unwrap_or(1);
    let band = 8 * ts + 12;
    let width = (label_w + body_w).max(text_width(title, ts) + 16);
    let height = band + rows.iter().map(|(_, r)| r.height()).sum::<u32>();
    let mut out = RgbImage::from_pixel(width, height, WHITE);
    draw_text(&mut out, title, 8, 6, ts, INK);
    let mut y = band;
    for (label, img) in rows {
        let ly = y + img.height().saturating_sub(8 * ts) / 2;
        draw_text(&mut out, label, 8, ly, ts, INK);
        image::imageops::replace(&mut out, img, label_w as i64, y as i64);
        y += img.height();
    }
    out
}

/// Frames `img` in red (3 pixels): a sample the judge got wrong.
pub fn mark_wrong(img: &mut RgbImage) {
    let (w, h) = img.dimensions();
    for (x, y) in (0..h).flat_map(|y| (0..w).map(move |x| (x, y))) {
        if x < 3 || y < 3 || x + 3 >= w || y + 3 >= h {
            img.put_pixel(x, y, Rgb([220, 30, 30]));
        }
    }
}

/// Nearest-neighbour upscaling by a whole factor (1 returns a copy).
pub fn upscale(img: &RgbImage, scale: u32) -> RgbImage {
    if scale <= 1 {
        return img.clone();
    }
    image::imageops::resize(
        img,
        img.width() * scale,
        img.height() * scale,
        image::imageops::FilterType::Nearest,
    )
}

/// One frame of reverse diffusion: the K images of a state `[K, 3, H, W]` side by side, and
/// under them their x0 predictions (mid grey before the first step), upscaled by `scale`.
pub fn state_frame(x: &Tensor, x0: Option<&Tensor>, scale: u32, x0_row: bool) -> Result<RgbImage> {
    let k = x.dim(0)?;
    let mut tiles = Vec::with_capacity(2 * k);
    for i in 0..k {
        tiles.push(to_rgb8(&x.get(i)?)?);
    }
    if x0_row {
        for i in 0..k {
            tiles.push(match x0 {
                Some(x0) => to_rgb8(&x0.get(i)?)?,
                // Before the first step there is no prediction yet: mid grey.
                None => {
                    RgbImage::from_pixel(tiles[0].width(), tiles[0].height(), image::Rgb([128; 3]))
                }
            });
        }
    }
    let refs: Vec<&RgbImage> = tiles.iter().collect();
    Ok(upscale(&grid(&refs, k, 1, None), scale))
}

/// Writes each image of `x` `[K, 3, H, W]` as `sample_00.png …` in `out`, and all of them as
/// `grid.png` (upscaled by `scale`); returns the file names.
pub fn save_samples(x: &Tensor, out: &std::path::Path, scale: u32) -> Result<Vec<String>> {
    let k = x.dim(0)?;
    let mut files = Vec::with_capacity(k + 1);
    let mut finals = Vec::with_capacity(k);
    for i in 0..k {
        let img = to_rgb8(&x.get(i)?)?;
        let name = format!("sample_{i:02}.png");
        save_png(&img, &out.join(&name))?;
        files.push(name);
        finals.push(img);
    }
    let refs: Vec<&RgbImage> = finals.iter().collect();
    save_png(
        &upscale(&grid(&refs, k.min(8), 1, None), scale),
        &out.join("grid.png"),
    )?;
    files.push("grid.png".into());
    Ok(files)
}

/// Outlines the repainted region (`repaint`, `side`×`side`, row-major) on every tile of a
/// frame from [`state_frame`] with `cols` tiles per row and `rows` rows, upscaled by `scale`:
/// a yellow line along each edge between a repainted and a kept pixel.
pub fn outline_tiles(
    img: &mut RgbImage,
    repaint: &[bool],
    side: usize,
    (cols, rows): (usize, usize),
    scale: u32,
) {
    const LINE: Rgb<u8> = Rgb([255, 214, 0]);
    let s = scale.max(1);
    let width = (s / 4).max(1);
    let at = |x: i64, y: i64| -> Option<bool> {
        let inside = x >= 0 && y >= 0 && (x as usize) < side && (y as usize) < side;
        inside.then(|| repaint[y as usize * side + x as usize])
    };
    for (r, c) in (0..rows).flat_map(|r| (0..cols).map(move |c| (r, c))) {
        let ox = s * (1 + c as u32 * (side as u32 + 1));
        let oy = s * (1 + r as u32 * (side as u32 + 1));
        for (y, x) in (0..side as i64).flat_map(|y| (0..side as i64).map(move |x| (y, x))) {
            if at(x, y) != Some(true) {
                continue;
            }
            // Edges towards a kept neighbour: left, right, top, bottom.
            let (px, py) = (ox + x as u32 * s, oy + y as u32 * s);
            let edges = [
                (at(x - 1, y) == Some(false), (px, py, width, s)),
                (at(x + 1, y) == Some(false), (px + s - width, py, width, s)),
                (at(x, y - 1) == Some(false), (px, py, s, width)),
                (at(x, y + 1) == Some(false), (px, py + s - width, s, width)),
            ];
            for (_, (x0, y0, w, h)) in edges.into_iter().filter(|(kept, _)| *kept) {
                for (dy, dx) in (0..h).flat_map(|dy| (0..w).map(move |dx| (dy, dx))) {
                    if x0 + dx < img.width() && y0 + dy < img.height() {
                        img.put_pixel(x0 + dx, y0 + dy, LINE);
                    }
                }
            }
        }
    }
}
