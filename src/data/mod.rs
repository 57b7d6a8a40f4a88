//! Training data: the procedural shapes dataset ([`shapes`], drawn by index from a seed, so
//! any batch of any run can be redrawn exactly) and folders of pictures ([`folder`]: class
//! subfolders become prompt words). The trainer turns both into model-space batches
//! `[B, 3, S, S]` with condition ids `[B, slots]`.

pub mod emoji;
pub mod folder;
pub mod shapes;
