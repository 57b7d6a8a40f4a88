//! Reads a user's picture into a model-space tensor `[3, H, W]` in [-1, 1].
//!
//! Any format the image crate decodes (PNG 8/16-bit, JPEG, GIF's first frame, BMP, WebP,
//! TIFF), in gray, gray+alpha, RGB or RGBA, turned upright by its EXIF orientation. Alpha is composited over white. 8-bit pixels map
//! as x/127.5 - 1; deeper ones keep their precision (v·2 - 1 for v in [0, 1]).

use std::path::{Path, PathBuf};
use std::str::FromStr;

use candle_core::{Device, Tensor};
use image::imageops::FilterType;
use image::{DynamicImage, ImageReader, Rgb32FImage, RgbImage};

use crate::error::{Error, Result};

/// The default largest side; larger pictures are scaled down.
pub const DEFAULT_MAX_SIDE: u32 = 1024;

/// The largest side `--size` or `--max-side` may ask for.
pub const SIZE_LIMIT: u32 = 8192;

/// A forced output size, parsed from `WxH`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Size {
    pub width: u32,
    pub height: u32,
}

impl FromStr for Size {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        let bad = || Error::option_is("size", format!("'{s}'"), "is not WIDTHxHEIGHT, e.g. 64x64");
        let (w, h) = s.split_once(['x', 'X']).ok_or_else(bad)?;
        let width: u32 = w.trim().parse().map_err(|_| bad())?;
        let height: u32 = h.trim().parse().map_err(|_| bad())?;
        if width == 0 || height == 0 {
            return Err(Error::option(
                "size",
                s,
                "width and height must be at least 1",
            ));
        }
        if width > SIZE_LIMIT || height > SIZE_LIMIT {
            return Err(Error::option(
                "size",
                s,
                format!("each side must be at most {SIZE_LIMIT}"),
            ));
        }
        Ok(Size { width, height })
    }
}

/// How to size the loaded picture.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoadOptions {
    /// Scale down (keeping the aspect ratio) when a side is longer than this.
    pub max_side: u32,
    /// Resize to exactly this size instead.
    pub size: Option<Size>,
}

impl Default for LoadOptions {
    fn default() -> Self {
        Self {
            max_side: DEFAULT_MAX_SIDE,
            size: None,
        }
    }
}

/// A picture in model space.
pub struct LoadedImage {
    /// `[3, H, W]`, values in [-1, 1].
    pub x0: Tensor,
    /// (width, height) as stored in the file.
    pub original_size: (u32, u32),
    /// (width, height) after resizing.
    pub size: (u32, u32),
    /// True when the picture was scaled down to fit `max_side`.
    pub downscaled: bool,
    /// [`load_square`]: the centred square (x, y, side) a picture that is not square was
    /// cropped to before resizing.
    pub cropped: Option<[u32; 3]>,
}

impl LoadedImage {
    /// The note a run prints when the picture was cropped to a square.
    pub fn crop_note(&self, path: &Path) -> Option<String> {
        let [x, y, side] = self.cropped?;
        let (w, h) = self.original_size;
        Some(format!(
            "{} is {w}x{h}, not square: used its centred {side}x{side} square (from x={x}, y={y}), scaled to {}x{}",
            path.display(),
            self.size.0,
            self.size.1
        ))
    }
}

/// The centred square of a `w`×`h` picture as (x, y, side), or None when it is square.
pub fn centre_square(w: u32, h: u32) -> Option<[u32; 3]> {
    let side = w.min(h);
    (w != h).then_some([(w - side) / 2, (h - side) / 2, side])
}

/// Loads the picture at `path` as a `side`×`side` model input. A picture that is not square
/// is cropped to its centred square first, never stretched; `cropped` says where.
pub fn load_square(path: &Path, side: u32, device: &Device) -> Result<LoadedImage> {
    let img = flatten_over_white(decode(path)?);
    let (w, h) = (img.width(), img.height());
    let cropped = centre_square(w, h);
    let img = match cropped {
        Some([x, y, s]) => img.crop_imm(x, y, s, s),
        None => img,
    };
    let img = img.resize_exact(side, side, FilterType::Lanczos3);
    Ok(LoadedImage {
        x0: to_model_space(&img, device)?,
        original_size: (w, h),
        size: (side, side),
        downscaled: false,
        cropped,
    })
}

fn image_err(path: &Path, reason: impl Into<String>) -> Error {
    Error::Image {
        path: PathBuf::from(path),
        reason: reason.into(),
    }
}

/// The largest picture file (or piped stream) diffuse reads.
pub const MAX_FILE_BYTES: u64 = 1 << 30;
/// The most memory a decoded picture may take (the image crate's own default limit).
pub const MAX_DECODED_BYTES: u64 = 512 << 20;

/// The bytes of `path`: a regular file, or a pipe such as `/dev/stdin`, at most
/// [`MAX_FILE_BYTES`].
fn read_picture_bytes(path: &Path) -> Result<Vec<u8>> {
    use std::io::Read;
    let meta = std::fs::metadata(path).map_err(|e| image_err(path, e.to_string()))?;
    if meta.is_dir() {
        return Err(image_err(path, "it is a directory, not an image file"));
    }
    if meta.is_file() && meta.len() > MAX_FILE_BYTES {
        return Err(image_err(
            path,
            format!(
                "{} bytes is more than the {MAX_FILE_BYTES} a picture file may have",
                meta.len()
            ),
        ));
    }
    let file = std::fs::File::open(path).map_err(|e| image_err(path, e.to_string()))?;
    let mut bytes = Vec::new();
    file.take(MAX_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| image_err(path, e.to_string()))?;
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(image_err(
            path,
            format!("the stream is longer than the {MAX_FILE_BYTES} bytes a picture may have"),
        ));
    }
    if bytes.is_empty() {
        let what = if meta.is_file() {
            "the file is empty"
        } else {
            "the stream was empty"
        };
        return Err(image_err(path, what));
    }
    Ok(bytes)
}

/// Decodes the picture at `path` (a file, or a pipe such as `/dev/stdin`), with a one-line
/// reason when it cannot. Pictures that would take more than [`MAX_DECODED_BYTES`] decoded are
/// refused before decoding, with their size.
pub fn decode(path: &Path) -> Result<DynamicImage> {
    let bytes = read_picture_bytes(path)?;
    let mut reader = ImageReader::new(std::io::Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| image_err(path, e.to_string()))?;
    if reader.format().is_none() {
        // No known signature: go by the file name, so a broken `.png` says why it cannot decode.
        if let Ok(format) = image::ImageFormat::from_path(path) {
            reader.set_format(format);
        }
    }
    if reader.format().is_none() {
        return Err(image_err(path, "not a recognised image format"));
    }
    let fail = |e: image::ImageError| {
        let msg = e.to_string().replace('\n', " ");
        image_err(path, format!("cannot decode: {msg}"))
    };
    // Photos from phones are often stored sideways with an EXIF orientation tag: honour it.
    let mut decoder = reader.into_decoder().map_err(fail)?;
    let need = image::ImageDecoder::total_bytes(&decoder);
    if need > MAX_DECODED_BYTES {
        let (w, h) = image::ImageDecoder::dimensions(&decoder);
        return Err(image_err(path, format!(
            "{w}x{h} pixels take {} MB decoded, more than the {} MB diffuse decodes; scale it down first (for example to 8192 px on the long side)",
            need >> 20, MAX_DECODED_BYTES >> 20
        )));
    }
    let orientation = image::ImageDecoder::orientation(&mut decoder)
        .unwrap_or(image::metadata::Orientation::NoTransforms);
    let mut img = DynamicImage::from_decoder(decoder).map_err(fail)?;
    img.apply_orientation(orientation);
    Ok(img)
}

/// Composites alpha over white and drops it, keeping 8-bit images 8-bit.
pub fn flatten_over_white(img: DynamicImage) -> DynamicImage {
    let eight_bit = matches!(
        img,
        DynamicImage::ImageLuma8(_)
            | DynamicImage::ImageLumaA8(_)
            | DynamicImage::ImageRgb8(_)
            | DynamicImage::ImageRgba8(_)
    );
    if !img.color().has_alpha() {
        return if eight_bit {
            DynamicImage::ImageRgb8(img.to_rgb8())
        } else {
            DynamicImage::ImageRgb32F(img.to_rgb32f())
        };
    }
    if eight_bit {
        let rgba = img.to_rgba8();
        let out = RgbImage::from_fn(rgba.width(), rgba.height(), |x, y| {
            let p = rgba.get_pixel(x, y).0;
            let a = p[3] as f32 / 255.0;
            image::Rgb(std::array::from_fn(|c| {
                (p[c] as f32 * a + 255.0 * (1.0 - a)).round() as u8
            }))
        });
        DynamicImage::ImageRgb8(out)
    } else {
        let rgba = img.to_rgba32f();
        let out = Rgb32FImage::from_fn(rgba.width(), rgba.height(), |x, y| {
            let p = rgba.get_pixel(x, y).0;
            image::Rgb(std::array::from_fn(|c| p[c] * p[3] + (1.0 - p[3])))
        });
        DynamicImage::ImageRgb32F(out)
    }
}

/// The size to resize to, if any, and whether it is a downscale to fit `max_side`.
fn target_size(w: u32, h: u32, opts: &LoadOptions) -> Option<(u32, u32, bool)> {
    if let Some(s) = opts.size {
        return Some((s.width, s.height, false));
    }
    let longest = w.max(h);
    if longest <= opts.max_side {
        return None;
    }
    let scale = opts.max_side as f64 / longest as f64;
    let nw = ((w as f64 * scale).round() as u32).max(1);
    let nh = ((h as f64 * scale).round() as u32).max(1);
    Some((nw, nh, true))
}

/// Appends an RGB image's pixels to `out` channel by channel (`[3, H, W]` order), in [-1, 1].
pub fn push_chw(out: &mut Vec<f32>, img: &RgbImage) {
    for c in 0..3 {
        out.extend(img.pixels().map(|p| p.0[c] as f32 / 127.5 - 1.0));
    }
}

/// Maps an RGB image to a `[3, H, W]` tensor in [-1, 1].
pub fn to_model_space(img: &DynamicImage, device: &Device) -> Result<Tensor> {
    let (w, h) = (img.width() as usize, img.height() as usize);
    let chw = match img {
        DynamicImage::ImageRgb8(rgb) => {
            let mut chw = Vec::with_capacity(3 * h * w);
            push_chw(&mut chw, rgb);
            chw
        }
        other => {
            let mut chw = vec![0f32; 3 * h * w];
            let rgb = other.to_rgb32f();
            for (i, p) in rgb.pixels().enumerate() {
                for c in 0..3 {
                    chw[c * h * w + i] = (p.0[c] * 2.0 - 1.0).clamp(-1.0, 1.0);
                }
            }
            chw
        }
    };
    Ok(Tensor::from_vec(chw, (3, h, w), device)?)
}

/// Loads, flattens and sizes the picture at `path` into model space.
pub fn load_image(path: &Path, opts: &LoadOptions, device: &Device) -> Result<LoadedImage> {
    if opts.max_side == 0 || opts.max_side > SIZE_LIMIT {
        return Err(Error::out_of_range(
            "max-side",
            opts.max_side,
            format!("1..={SIZE_LIMIT}"),
        ));
    }
    let img = flatten_over_white(decode(path)?);
    let (w, h) = (img.width(), img.height());
    let (img, downscaled) = match target_size(w, h, opts) {
        Some((nw, nh, down)) => (img.resize_exact(nw, nh, FilterType::Lanczos3), down),
        None => (img, false),
    };
    Ok(LoadedImage {
        x0: to_model_space(&img, device)?,
        original_size: (w, h),
        size: (img.width(), img.height()),
        downscaled,
        cropped: None,
    })
}
