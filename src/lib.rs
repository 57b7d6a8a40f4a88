//! diffuse: diffusion models made visible. A map of the crate, from the tensor math up:
//!
//! - [`schedule`]: β schedules, ᾱ_t, `q_sample`, `q_step` and SNR, matching diffusers in f64.
//! - [`forward`]: forward diffusion of a picture (closed form or Markov chain).
//! - [`nn`]: layers next to their fast CPU ops (conv, GroupNorm+SiLU, attention, LayerNorm,
//!   GEGLU, upsampling, seeded init), each with its backward pass.
//! - [`vocab`]: a slot model's prompt vocabulary (slots and their words).
//! - [`text`]: the tokenizer, the caption grammar and the transformer text encoder.
//! - [`unet`]: the denoiser (config, blocks, embeddings, cross-attention, attention maps).
//! - [`sampler`]: DDPM, DDIM and DPM-Solver++ behind one trait, step by step as diffusers.
//! - [`pipeline`]: the [`pipeline::Denoiser`] trait, classifier-free guidance and the
//!   observed reverse loop.
//! - [`edit`]: inpainting (replace, and RePaint in one place), seed and prompt
//!   interpolation, DDIM inversion.
//! - [`diffusers`]: diffusers' `UNet2DModel` with diffusers' weight names, its folders and
//!   scheduler configs, and export.
//! - [`model`]: a loaded model (file, built-in or diffusers folder), its schedule, sampling
//!   defaults, samplers and guidance.
//! - [`defaults`]: every sampling default, written once, and the shared limits.
//! - [`prompt`]: prompt text to condition ids.
//! - [`run`]: one sampling run (columns in lockstep, a decoder hook, the finite check), shared
//!   by every command and the playground.
//! - [`train`]: the trainer, its config, checkpoints and AdamW; [`vae`]: the autoencoder of
//!   latent diffusion and its trainer.
//! - [`data`]: the procedural datasets (shapes, emoji scenes with captions) and image folders.
//! - [`nearest`]: "Is it new?": a model's exact training stream regenerated and searched for
//!   the scenes nearest to a picture.
//! - [`judge`]: the judges that score samples: the analytic shapes judge and the emoji-scene
//!   judge.
//! - [`io`]: atomic writes, output folders, reading pictures, safetensors with metadata.
//! - [`render`]: tensors to pictures, grids, frame sequences with GIF and strip, plots.
//! - [`jobs`]: one file per command, each a short sequence of the calls above, and the noise
//!   files `invert` writes.
//! - [`bench`]: the `diffuse bench` suite, its measurements and its cases.
//! - [`serve`]: the web playground (`diffuse serve`): its API, job queue, runs and page.
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
pub mod nearest;
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
pub mod vae;
pub mod vocab;

pub use error::{Error, Result};
