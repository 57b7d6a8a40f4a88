//! Files in and out: atomic writes and output-folder checks ([`fs`]), reading a user's
//! picture into model space ([`image`]), and safetensors with metadata ([`safetensors`]).
//! Nothing here does tensor math; nothing else in the library opens a file for writing.

pub mod fs;
pub mod image;
pub mod safetensors;
