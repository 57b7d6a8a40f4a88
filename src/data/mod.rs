//! Training data: the procedural shapes dataset. Batches come out as model-space tensors
//! `[B, 3, 32, 32]` with condition ids `[B, slots]`.

pub mod folder;
pub mod shapes;
