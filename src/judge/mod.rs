//! The project's judges: [`shapes`] reads colour and shape off a 32×32 shapes image
//! analytically; [`emoji`] finds the Twemoji sprites in a 64×64 scene by template matching
//! and checks the caption's objects and relation. Both are checked by `diffuse eval
//! --self-test` on fresh dataset images under added noise.

pub mod emoji;
pub mod pixels;
pub mod shapes;

pub use shapes::{judge, Tally, Verdict};
