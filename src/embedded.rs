//! The shipped denoiser, compiled into the binary so `diffuse` works from any folder.
//! `--model PATH` overrides it.

use candle_core::Device;

use crate::checkpoint::{self, LoadedModel};
use crate::error::Result;

/// How the built-in model is named in messages.
pub const NAME: &str = "the built-in model (models/shapes32.safetensors)";

/// The bytes of `models/shapes32.safetensors` at build time.
pub static SHAPES32: &[u8] = include_bytes!("../models/shapes32.safetensors");

/// Loads `path`, or the built-in model when `path` is None.
pub fn load(path: Option<&std::path::Path>, device: &Device) -> Result<LoadedModel> {
    match path {
        Some(p) => checkpoint::load_model(p, device),
        None => checkpoint::load_model_bytes(NAME, SHAPES32, device),
    }
}

/// Like [`load`], also returning the model's name for reports and its bytes (for hashing).
pub fn load_named(
    path: Option<&std::path::Path>,
    device: &Device,
) -> Result<(LoadedModel, String, std::borrow::Cow<'static, [u8]>)> {
    let model = load(path, device)?;
    match path {
        Some(p) => {
            let bytes = std::fs::read(p)
                .map_err(|e| crate::Error::invalid(format!("'{}': {e}", p.display())))?;
            Ok((model, p.display().to_string(), bytes.into()))
        }
        None => Ok((model, NAME.to_string(), SHAPES32.into())),
    }
}
