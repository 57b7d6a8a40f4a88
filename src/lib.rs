//! diffuse: diffusion models made visible. A map of the crate, nouns first:
//!
//! - [`schedule`]: β schedules, ᾱ_t, `q_sample` and SNR, matching diffusers in f64.
//! - [`forward`]: forward diffusion of a picture (closed form or Markov chain).
//! - [`nn`]: layers next to their fast CPU ops (conv, GroupNorm+SiLU, upsampling, seeded init).
//! - [`unet`]: the denoiser (config, blocks, embeddings).
//! - [`sampler`]: DDPM, DDIM and DPM-Solver++ behind one trait, step by step as diffusers.
//! - [`pipeline`]: classifier-free guidance and the observed reverse loop.
//! - [`edit`]: inpainting (replace, RePaint), seed and prompt interpolation, DDIM inversion.
//! - [`diffusers`]: diffusers' `UNet2DModel` with diffusers' weight names.
//! - [`model`]: a trained model file (or the built-in one), its schedule and sampler config.
//! - [`prompt`]: prompt text to condition ids.
//! - [`train`]: the trainer, its config, checkpoints and AdamW.
//! - [`data`]: the shapes dataset and image folders.
//! - [`judge`]: the shapes judge that scores samples.
//! - [`io`]: atomic writes, output folders, reading pictures, safetensors.
//! - [`render`]: tensors to pictures, grids, frame sequences with GIF and strip, plots.
//! - [`jobs`]: one file per command, each a short sequence of the calls above.
//! - [`bench`]: the `diffuse bench` suite and its cases.
//! - [`serve`]: the web playground (`diffuse serve`): its API, job queue and page.
//! - [`device`], [`rng`], [`progress`], [`alloc`], [`error`]: where tensors live, seeded
//!   noise, progress reporting, the heap counter and the error type.
//!
//! The tensor math never prints and never touches files; [`io`] and [`render`] do the
//! files, and [`jobs`] wires them together for the command line.

pub mod alloc;
pub mod bench;
pub mod data;
pub mod defaults;
pub mod device;
pub mod diffusers;
pub mod edit;
pub mod error;
pub mod forward;
pub mod io;
pub mod jobs;
pub mod judge;
pub mod model;
pub mod nn;
pub mod pipeline;
pub mod progress;
pub mod prompt;
pub mod render;
pub mod rng;
pub mod run;
pub mod sampler;
pub mod schedule;
pub mod serve;
pub mod text;
pub mod train;
pub mod unet;
pub mod vocab;

pub use error::{Error, Result};
