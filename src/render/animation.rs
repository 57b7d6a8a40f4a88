//! Frame sequences on disk: every frame as `frames/frame_0000.png …`, a looping GIF and a
//! labelled contact strip, shared by `diffuse noise` and `diffuse generate`.
//!
//! Frames stream through [`AnimationWriter`]: it holds at most one small batch of pictures
//! (a few per core), encodes the batch's PNGs and GIF palettes in parallel, and appends to
//! the GIF in order. Memory does not grow with the number of frames, and the bytes are the
//! same as encoding all frames at once. A caller whose frames are large passes a smaller
//! display version of each ([`AnimationWriter::push_shown`]): the GIF and the strip are made
//! of those, the PNG frames stay full size.

use std::fmt;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::{Duration, Instant};

use image::RgbImage;
use rayon::prelude::*;

use crate::error::{Error, Result};
use crate::io::fs;
use crate::render::{evenly_chosen, grid, save_png};

/// GIF quantisation speed (1 best … 30 fastest); 10 is NeuQuant's usual trade-off.
pub const GIF_SPEED: i32 = 10;
/// The largest GIF speed `--fps` may ask for (GIF delays are in hundredths of a second).
pub const MAX_FPS: f64 = 100.0;
/// The least time the GIF shows its last frame before looping, in hundredths of a second.
pub const FINAL_HOLD_CS: u16 = 150;
/// The width a contact strip keeps to in one row, in pixels.
const STRIP_WIDTH: u32 = 2400;
/// Frames shown on the contact strip.
pub const STRIP_FRAMES: usize = 8;
/// A frame above this many bytes (about 2,300 px square) is written in batches of one per core.
const LARGE_FRAME_BYTES: usize = 16 << 20;
/// The longest side, in pixels, of a picture on the GIF and the strip: larger pictures are
/// shown scaled down to it (`diffuse noise` of a 4096-px photo), the PNG frames keep them.
pub const DISPLAY_MAX_SIDE: u32 = 512;

/// How many of the states become frames (`--frames all|N`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameCount {
    /// Every state.
    All,
    /// About this many, evenly chosen, first and last included.
    Count(usize),
}

impl FrameCount {
    /// The indices of the states (out of `total`) that become frames.
    pub fn pick(self, total: usize) -> Vec<usize> {
        match self {
            FrameCount::All => (0..total).collect(),
            FrameCount::Count(n) => evenly_chosen(total, n),
        }
    }

    /// Refuses a count of zero.
    pub fn validate(self) -> Result<()> {
        match self {
            FrameCount::Count(0) => Err(Error::option("frames", 0, "at least one frame is needed")),
            _ => Ok(()),
        }
    }
}

impl FromStr for FrameCount {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        if s == "all" {
            return Ok(FrameCount::All);
        }
        let n: usize = s.parse().map_err(|_| {
            Error::option_is("frames", format!("'{s}'"), "is neither 'all' nor a number")
        })?;
        let count = FrameCount::Count(n);
        count.validate()?;
        Ok(count)
    }
}

impl fmt::Display for FrameCount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FrameCount::All => f.write_str("all"),
            FrameCount::Count(n) => write!(f, "{n}"),
        }
    }
}

/// The name of frame `i`: `frame_0000.png`.
pub fn frame_name(i: usize) -> String {
    format!("frame_{i:04}.png")
}

/// Checks a GIF speed before any work starts.
pub fn check_fps(fps: f64) -> Result<()> {
    if !(fps > 0.0 && fps <= MAX_FPS) {
        return Err(Error::out_of_range("fps", fps, format!("(0, {MAX_FPS}]")));
    }
    Ok(())
}

/// Removes `frame_*.png` left in `dir` by an earlier run (only with `--force`).
fn clear_old_frames(dir: &Path) -> Result<()> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Ok(());
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if name.starts_with("frame_") && name.ends_with(".png") {
            std::fs::remove_file(e.path()).map_err(|reason| Error::Write {
                path: e.path(),
                reason,
            })?;
        }
    }
    Ok(())
}

/// The GIF being appended to, in a temporary file until [`AnimationWriter::finish`].
struct GifFile {
    encoder: gif::Encoder<BufWriter<File>>,
    tmp: PathBuf,
    size: (u16, u16),
}

/// Writes a sequence of `total` frames into `out` as it is produced.
pub struct AnimationWriter {
    out: PathBuf,
    gif_name: &'static str,
    delay: u16,
    total: usize,
    strip_picks: Vec<usize>,
    strip: Vec<(RgbImage, String)>,
    /// Frames not yet written, each with its display version when it has one.
    pending: Vec<(RgbImage, Option<RgbImage>)>,
    batch: usize,
    written: usize,
    gif: Option<GifFile>,
    timings: [Duration; 3],
}

/// What [`AnimationWriter::finish`] wrote, and the time spent on each kind of file.
#[derive(Debug, Clone)]
pub struct Animation {
    /// The files, relative to the output folder: the frames, the GIF, `strip.png`.
    pub files: Vec<String>,
    /// PNG frames, GIF and strip, in milliseconds.
    pub frames_ms: f64,
    pub gif_ms: f64,
    pub strip_ms: f64,
}

impl AnimationWriter {
    /// A writer of `total` frames into `out` (which the caller has prepared), with the GIF
    /// named `gif_name`. With `force`, frames of an earlier run are removed first.
    pub fn new(
        out: &Path,
        gif_name: &'static str,
        total: usize,
        fps: f64,
        force: bool,
    ) -> Result<Self> {
        check_fps(fps)?;
        if total == 0 {
            return Err(Error::option("frames", 0, "at least one frame is needed"));
        }
        let frames_dir = out.join("frames");
        if force {
            clear_old_frames(&frames_dir)?;
        }
        fs::create_dir(&frames_dir)?;
        Ok(Self {
            out: out.to_path_buf(),
            gif_name,
            delay: delay_of(fps),
            total,
            strip_picks: evenly_chosen(total, STRIP_FRAMES),
            strip: Vec::new(),
            pending: Vec::new(),
            batch: 2 * rayon::current_num_threads().max(1),
            written: 0,
            gif: None,
            timings: [Duration::ZERO; 3],
        })
    }

    /// Adds the next frame; `label` names it on the strip (e.g. `t=999`).
    pub fn push(&mut self, frame: RgbImage, label: impl FnOnce() -> String) -> Result<()> {
        self.push_shown(frame, None, label)
    }

    /// Adds the next frame, with `shown` standing for it on the GIF and the strip when given
    /// (a display-size version of a large frame; every frame of a run has one or none).
    pub fn push_shown(
        &mut self,
        frame: RgbImage,
        shown: Option<RgbImage>,
        label: impl FnOnce() -> String,
    ) -> Result<()> {
        let index = self.written + self.pending.len();
        if index >= self.total {
            return Err(Error::Unsupported(format!(
                "animation got more than the {} frames it was made for",
                self.total
            )));
        }
        let display = shown.as_ref().unwrap_or(&frame);
        let earlier = (self.pending.first())
            .map(|(f, s)| s.as_ref().unwrap_or(f))
            .or(self.strip.first().map(|(f, _)| f));
        if let Some(first) = earlier {
            if first.dimensions() != display.dimensions() {
                return Err(gif_err(format!(
                    "frame {index} is {}x{}, unlike the first frames' {}x{}",
                    display.width(),
                    display.height(),
                    first.width(),
                    first.height()
                )));
            }
        }
        if self.strip_picks.contains(&index) {
            self.strip.push((display.clone(), label()));
        }
        self.pending.push((frame, shown));
        if self.pending.len() >= self.batch_for(&self.pending[0].0) {
            self.flush()?;
        }
        Ok(())
    }

    /// Frames held before a batch is written: two per core, or one per core for frames over
    /// [`LARGE_FRAME_BYTES`], so that memory stays near the frame size times the cores.
    fn batch_for(&self, frame: &RgbImage) -> usize {
        match frame.as_raw().len() > LARGE_FRAME_BYTES {
            true => self.batch.div_ceil(2),
            false => self.batch,
        }
    }

    /// Encodes the pending batch: PNGs and GIF palettes in parallel, GIF frames in order.
    fn flush(&mut self) -> Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let began = Instant::now();
        let first = self.written;
        let frames_dir = self.out.join("frames");
        self.pending
            .par_iter()
            .enumerate()
            .try_for_each(|(i, (img, _))| save_png(img, &frames_dir.join(frame_name(first + i))))?;
        self.timings[0] += began.elapsed();
        let began = Instant::now();
        let shown: Vec<&RgbImage> = (self.pending.iter())
            .map(|(f, s)| s.as_ref().unwrap_or(f))
            .collect();
        let (w, h) = gif_size(shown[0])?;
        let mut encoded = quantize(&shown, (w, h), self.delay);
        if self.written + encoded.len() == self.total {
            hold_last(&mut encoded);
        }
        let gif = self.gif_file(w, h)?;
        for f in &encoded {
            gif.encoder.write_frame(f).map_err(gif_err)?;
        }
        self.written += self.pending.len();
        self.pending.clear();
        self.timings[1] += began.elapsed();
        Ok(())
    }

    /// The open GIF, created (with its header and loop flag) on the first batch.
    fn gif_file(&mut self, w: u16, h: u16) -> Result<&mut GifFile> {
        if self.gif.is_none() {
            let path = self.out.join(self.gif_name);
            let tmp = fs::temp_path(&path);
            let file = File::create(&tmp).map_err(|reason| Error::Write { path, reason })?;
            let mut encoder =
                gif::Encoder::new(BufWriter::new(file), w, h, &[]).map_err(gif_err)?;
            encoder.set_repeat(gif::Repeat::Infinite).map_err(gif_err)?;
            self.gif = Some(GifFile {
                encoder,
                tmp,
                size: (w, h),
            });
        }
        let gif = self.gif.as_mut().ok_or_else(|| gif_err("no GIF"))?;
        if gif.size != (w, h) {
            return Err(gif_err(format!(
                "frame size {w}x{h} differs from the first frame's {}x{}",
                gif.size.0, gif.size.1
            )));
        }
        Ok(gif)
    }

    /// Writes the last batch, closes the GIF (renaming it into place) and draws the strip.
    pub fn finish(mut self) -> Result<Animation> {
        self.flush()?;
        let began = Instant::now();
        let gif = self.gif.take().ok_or_else(|| gif_err("no frames"))?;
        let path = self.out.join(self.gif_name);
        let finished = gif.encoder.into_inner().map_err(gif_err).and_then(|mut w| {
            w.flush()
                .and_then(|()| w.get_ref().sync_all())
                .and_then(|()| std::fs::rename(&gif.tmp, &path))
                .map_err(|reason| Error::Write {
                    path: path.clone(),
                    reason,
                })
        });
        if let Err(e) = finished {
            let _ = std::fs::remove_file(&gif.tmp);
            return Err(e);
        }
        self.timings[1] += began.elapsed();
        let began = Instant::now();
        let images: Vec<&RgbImage> = self.strip.iter().map(|(img, _)| img).collect();
        let labels: Vec<String> = self.strip.iter().map(|(_, l)| l.clone()).collect();
        // One row while it stays under about 2,400 px, else rows of four (or two).
        let frame_w = images.first().map_or(1, |i| i.width()).max(1);
        let cols = if frame_w * images.len() as u32 <= STRIP_WIDTH {
            images.len()
        } else {
            (STRIP_WIDTH / frame_w).clamp(2, 4) as usize
        };
        save_png(
            &grid(&images, cols, 2, Some(&labels)),
            &self.out.join("strip.png"),
        )?;
        let mut files: Vec<String> = (0..self.written)
            .map(|i| format!("frames/{}", frame_name(i)))
            .collect();
        files.extend([self.gif_name.to_string(), "strip.png".to_string()]);
        self.timings[2] += began.elapsed();
        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        Ok(Animation {
            files,
            frames_ms: ms(self.timings[0]),
            gif_ms: ms(self.timings[1]),
            strip_ms: ms(self.timings[2]),
        })
    }

    /// Time spent encoding and writing so far, in milliseconds.
    pub fn busy_ms(&self) -> f64 {
        self.timings.iter().map(Duration::as_secs_f64).sum::<f64>() * 1e3
    }
}

/// A frame's size as GIF dimensions, or an error when a side exceeds 65,535.
fn gif_size(img: &RgbImage) -> Result<(u16, u16)> {
    let (w, h) = (img.width(), img.height());
    match (u16::try_from(w), u16::try_from(h)) {
        (Ok(w), Ok(h)) => Ok((w, h)),
        _ => Err(gif_err(format!("{w}x{h} is too large for a GIF"))),
    }
}

/// GIF frames of `frames` (all `size`), palettes quantised in parallel.
fn quantize(frames: &[&RgbImage], size: (u16, u16), delay: u16) -> Vec<gif::Frame<'static>> {
    frames
        .par_iter()
        .map(|img| {
            let mut f = gif::Frame::from_rgb_speed(size.0, size.1, img.as_raw(), GIF_SPEED);
            f.delay = delay;
            f
        })
        .collect()
}

/// Shows the last frame for at least [`FINAL_HOLD_CS`], so the result can be seen before
/// the loop starts again.
fn hold_last(frames: &mut [gif::Frame<'static>]) {
    if let Some(last) = frames.last_mut() {
        last.delay = last.delay.max(FINAL_HOLD_CS);
    }
}

/// The GIF delay, in hundredths of a second, of `fps`.
fn delay_of(fps: f64) -> u16 {
    (100.0 / fps).round().max(1.0) as u16
}

/// `frames` (all the same size) as a looping GIF in memory, the same bytes the writer makes.
pub fn gif_bytes(frames: &[RgbImage], fps: f64) -> Result<Vec<u8>> {
    check_fps(fps)?;
    let first = frames.first().ok_or_else(|| gif_err("no frames"))?;
    let size = gif_size(first)?;
    let mut out = Vec::new();
    {
        let mut enc = gif::Encoder::new(&mut out, size.0, size.1, &[]).map_err(gif_err)?;
        enc.set_repeat(gif::Repeat::Infinite).map_err(gif_err)?;
        let refs: Vec<&RgbImage> = frames.iter().collect();
        let mut encoded = quantize(&refs, size, delay_of(fps));
        hold_last(&mut encoded);
        for f in encoded {
            enc.write_frame(&f).map_err(gif_err)?;
        }
    }
    Ok(out)
}

fn gif_err(reason: impl fmt::Display) -> Error {
    Error::Encode {
        format: "GIF",
        reason: reason.to_string(),
    }
}
