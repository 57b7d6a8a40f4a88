//! Whole commands as library calls: each wires the math to image I/O and reports progress
//! through [`crate::progress::Progress`], so the CLI only parses flags and draws bars.

pub mod eval;
pub mod generate;
pub mod noise;
pub mod train;
