//! The library's error type: every message names the file, flag or value at fault, on one line.

use std::path::PathBuf;

/// Errors from diffuse's library code.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A flag or configuration value is out of its valid range.
    #[error("{0}")]
    Invalid(String),

    /// An input image could not be read or decoded.
    #[error("cannot read image '{path}': {reason}")]
    Image { path: PathBuf, reason: String },

    /// A file or folder could not be written.
    #[error("cannot write '{path}': {reason}")]
    Write {
        path: PathBuf,
        reason: std::io::Error,
    },

    /// An output folder already holds files and `--force` was not given.
    #[error("output folder '{0}' is not empty (use --force to overwrite)")]
    OutputNotEmpty(PathBuf),

    /// The requested device is not available in this build or on this machine.
    #[error("{0}")]
    Device(String),

    /// An encoder (PNG, GIF, plot) failed.
    #[error("cannot encode '{path}': {reason}")]
    Encode { path: PathBuf, reason: String },

    /// A tensor operation failed.
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
}

impl Error {
    /// Shorthand for [`Error::Invalid`].
    pub fn invalid(msg: impl Into<String>) -> Self {
        Error::Invalid(msg.into())
    }
}

/// The library's result type.
pub type Result<T> = std::result::Result<T, Error>;
