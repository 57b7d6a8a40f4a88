//! diffuse: diffusion models made visible. Forward noising of any picture, noise schedules
//! matching Hugging Face diffusers, and the frames, GIFs and strips that show each step.
//!
//! The tensor math ([`schedule`], [`forward`]) never prints or touches files; image I/O lives
//! in [`load`] and [`frames`]; [`jobs`] wires them together for the command line.

pub mod alloc;
pub mod bench;
pub mod checkpoint;
pub mod data;
pub mod device;
pub mod embedded;
pub mod error;
pub mod eval;
pub mod forward;
pub mod frames;
pub mod fsutil;
pub mod jobs;
pub mod kernels;
pub mod load;
pub mod optim;
pub mod params;
pub mod pipeline;
pub mod plot;
pub mod progress;
pub mod prompt;
pub mod rng;
pub mod sampler;
pub mod schedule;
pub mod train;
pub mod unet;

pub use error::{Error, Result};
