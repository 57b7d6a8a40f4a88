//! Editing with a trained denoiser, the tensor side: inpainting (replace and RePaint),
//! interpolation between seeds and prompts, and DDIM inversion. No files, no printing; the
//! jobs in [`crate::jobs`] wire these to pictures.

pub mod inpaint;
pub mod interpolate;
pub mod invert;
pub mod repaint;
