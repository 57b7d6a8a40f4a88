//! The library's error type: structured variants whose messages name the option, file or value
//! at fault, on one line.
//!
//! Options are named as the command line spells them (`steps`, `num-images`, `beta-start`):
//! the library and the CLI share one name per option, so a message such as
//! `--steps 0 is out of range 1..=1000` is the same whether it came from a flag, a config file
//! or the web playground, and a caller can read the name and the value off the variant.

use std::path::PathBuf;

/// Errors from diffuse's library code.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An option has a value it cannot take, and why.
    #[error("--{option} {value}{reason}")]
    Option {
        option: &'static str,
        value: String,
        reason: Reason,
    },

    /// A name (sampler, schedule, device, …) is not one of the known ones.
    #[error("unknown {what} '{name}' (expected one of: {expected})")]
    UnknownName {
        what: &'static str,
        name: String,
        expected: String,
    },

    /// A prompt uses a word outside the model's vocabulary.
    #[error("unknown word '{word}' in prompt '{prompt}' (valid words: {valid})")]
    UnknownWord {
        word: String,
        prompt: String,
        valid: String,
    },

    /// A prompt is well-formed words, but not a prompt the model accepts.
    #[error("prompt '{prompt}' {reason}")]
    Prompt { prompt: String, reason: String },

    /// A model, checkpoint or data file (or folder) is missing, unreadable or inconsistent.
    /// `name` is the file's path in quotes, or a name such as "the built-in model".
    #[error("{name}: {reason}")]
    File { name: String, reason: String },

    /// A network or training configuration whose sizes do not fit together.
    #[error("{what} config: {reason}")]
    Config { what: &'static str, reason: String },

    /// A training-data folder is missing, unreadable or holds no usable picture.
    #[error("data folder '{path}'{reason}")]
    DataFolder { path: PathBuf, reason: Reason },

    /// An input image could not be read or decoded.
    #[error("cannot read image '{path}': {reason}")]
    Image { path: PathBuf, reason: String },

    /// A file or folder could not be written.
    #[error("cannot write '{path}': {reason}")]
    Write {
        path: PathBuf,
        reason: std::io::Error,
    },

    /// A single output file exists and `--force` was not given.
    #[error("'{0}' already exists (use --force to overwrite)")]
    Exists(PathBuf),

    /// An output folder already holds files and `--force` was not given.
    #[error("output folder '{0}' is not empty (use --force to overwrite)")]
    OutputNotEmpty(PathBuf),

    /// An output path exists but is a file where a folder is needed.
    #[error("output path '{0}' exists and is not a folder")]
    NotAFolder(PathBuf),

    /// The requested device is not available in this build or on this machine.
    #[error("{0}")]
    Device(String),

    /// An encoder failed: `format` is "PNG", "GIF", "safetensors" or "plot".
    #[error("cannot encode {format}: {reason}")]
    Encode {
        format: &'static str,
        reason: String,
    },

    /// A timestep outside the schedule.
    #[error("timestep {timestep} is out of range 0..={last} (the schedule has {len} training timesteps)")]
    Timestep {
        timestep: i64,
        last: usize,
        len: usize,
    },

    /// Per-image values whose count differs from the batch size.
    #[error("{what} got {got} timesteps for a batch of {batch}")]
    BatchMismatch {
        what: &'static str,
        got: usize,
        batch: usize,
    },

    /// A tensor has a shape the operation cannot take (a caller's mistake, not the user's).
    #[error("{what} expects {expected}, got {got:?}")]
    Shape {
        what: &'static str,
        expected: &'static str,
        got: Vec<usize>,
    },

    /// A command asked for something this model or build cannot do.
    #[error("{0}")]
    Unsupported(String),

    /// A helper process or thread pool could not be started or failed.
    #[error("{what}: {reason}")]
    Process { what: String, reason: String },

    /// A tensor operation failed.
    #[error("{}", one_line(.0))]
    Candle(#[from] candle_core::Error),
}

/// An error's message without what follows its first line (candle appends a backtrace when
/// `RUST_BACKTRACE` is set), so every message stays one line.
pub fn one_line(e: &impl std::fmt::Display) -> String {
    let text = e.to_string();
    text.lines().next().unwrap_or("").trim_end().to_string()
}

impl Error {
    /// Whether the error is the caller's request, not the run: an option value, name, prompt
    /// word or combination the library refuses before any work (exit status 2, as clap's
    /// usage errors). Files, devices and failed runs are not.
    pub fn is_usage(&self) -> bool {
        matches!(
            self,
            Error::Option { .. }
                | Error::UnknownName { .. }
                | Error::UnknownWord { .. }
                | Error::Prompt { .. }
                | Error::Timestep { .. }
                | Error::Unsupported(_)
        )
    }
}

/// Why an option's value cannot be taken.
#[derive(Debug, Clone, PartialEq)]
pub enum Reason {
    /// A predicate of the value: "is out of range 1..=64", "must be smaller than --beta-end 0.01".
    Is(String),
    /// An explanation: "--steps 0: train for at least one step".
    Because(String),
}

impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Reason::Is(s) => write!(f, " {s}"),
            Reason::Because(s) => write!(f, ": {s}"),
        }
    }
}

impl Error {
    /// An option's value and why it cannot be taken: `--count 0: write at least one image`.
    pub fn option(
        option: &'static str,
        value: impl std::fmt::Display,
        because: impl Into<String>,
    ) -> Self {
        Error::Option {
            option,
            value: value.to_string(),
            reason: Reason::Because(because.into()),
        }
    }

    /// An option's value and what is wrong with it: `--eta -1 must be a number ≥ 0`.
    pub fn option_is(
        option: &'static str,
        value: impl std::fmt::Display,
        predicate: impl Into<String>,
    ) -> Self {
        Error::Option {
            option,
            value: value.to_string(),
            reason: Reason::Is(predicate.into()),
        }
    }

    /// An option's value outside `range` (written as `1..=64`, `(0, 1)`, …).
    pub fn out_of_range(
        option: &'static str,
        value: impl std::fmt::Display,
        range: impl std::fmt::Display,
    ) -> Self {
        Self::option_is(option, value, format!("is out of range {range}"))
    }

    /// A model, checkpoint or data file at `path` and what is wrong with it.
    pub fn file(path: &std::path::Path, reason: impl std::fmt::Display) -> Self {
        Error::File {
            name: format!("'{}'", path.display()),
            reason: reason.to_string(),
        }
    }

    /// A name outside a fixed list.
    pub fn unknown(what: &'static str, name: &str, expected: &[&str]) -> Self {
        Error::UnknownName {
            what,
            name: name.to_string(),
            expected: expected.join(", "),
        }
    }
}

/// A prompt as messages quote it: at most 60 characters, so a huge prompt does not flood
/// the one-line error, with control characters escaped (`\n`), so it stays one line.
pub fn clip(text: &str) -> String {
    const MAX: usize = 60;
    let mut out = String::new();
    for (i, c) in text.chars().enumerate() {
        if i == MAX {
            out.push('…');
            break;
        }
        match c.is_control() {
            true => out.extend(c.escape_default()),
            false => out.push(c),
        }
    }
    out
}

/// The library's result type.
pub type Result<T> = std::result::Result<T, Error>;
