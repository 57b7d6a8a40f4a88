//! The models compiled into the binary (`--model NAME`), and what `diffuse models` shows of
//! them, read from their metadata without building weights.

use candle_core::Device;
use serde::Serialize;

use super::{load_bytes, LoadedModel, ModelMeta, MODEL_KEY};
use crate::error::{Error, Result};

/// The bytes of `models/shapes32.safetensors` at build time.
pub static SHAPES32: &[u8] = include_bytes!("../../models/shapes32.safetensors");

/// The bytes of `models/emoji64.safetensors` at build time: the text-to-image model.
pub static EMOJI64: &[u8] = include_bytes!("../../models/emoji64.safetensors");

/// A model compiled into the binary, chosen with `--model NAME`.
pub struct BuiltIn {
    pub name: &'static str,
    /// The file it was built from.
    pub file: &'static str,
    pub bytes: &'static [u8],
    /// What it draws, in a line.
    pub about: &'static str,
}

/// The built-in models, the default first.
pub static BUILTINS: [BuiltIn; 2] = [
    BuiltIn {
        name: "emoji64",
        file: "models/emoji64.safetensors",
        bytes: EMOJI64,
        about: "emoji scenes, 64 px: one or two of 24 nouns in a caption, e.g. \"a cat with a computer\"",
    },
    BuiltIn {
        name: "shapes32",
        file: "models/shapes32.safetensors",
        bytes: SHAPES32,
        about: "coloured shapes, 32 px: a colour and a shape, e.g. \"a red circle\"",
    },
];

impl BuiltIn {
    /// Whether this is the default model.
    pub fn is_default(&self) -> bool {
        std::ptr::eq(self, default_builtin())
    }
}

/// The model used when no `--model` is given.
pub fn default_builtin() -> &'static BuiltIn {
    &BUILTINS[0]
}

/// The built-in model called `name`.
pub fn builtin(name: &str) -> Option<&'static BuiltIn> {
    BUILTINS.iter().find(|b| b.name == name)
}

/// What `diffuse models` shows of a built-in model, read from its metadata.
#[derive(Debug, Clone, Serialize)]
pub struct ModelSummary {
    pub name: &'static str,
    pub default: bool,
    pub file: &'static str,
    pub about: &'static str,
    /// Image side in pixels.
    pub resolution: usize,
    pub parameters: usize,
    pub bytes: usize,
    pub trained_steps: u64,
    /// "slots" (one word per slot) or "text" (a caption through the text encoder).
    pub prompts: &'static str,
    /// The words a prompt may use, per slot or (text models) all of them.
    pub vocabulary: Vec<(String, Vec<String>)>,
}

/// How a model reads prompts, "text" (a caption through the text encoder) or "slots" (one
/// word per slot), and the words it knows: all of them (text models) or per slot.
pub fn prompt_words(unet: &crate::unet::UNetConfig) -> (&'static str, Vec<(String, Vec<String>)>) {
    match &unet.text {
        // Id 0 is padding, not a word.
        Some(t) => ("text", vec![("words".to_string(), t.vocab[1..].to_vec())]),
        None => (
            "slots",
            unet.vocab
                .slots
                .iter()
                .map(|s| (s.name.clone(), s.words.clone()))
                .collect(),
        ),
    }
}

/// The built-in models with their vocabulary, resolution and size (no weights are built).
pub fn builtin_summaries() -> Result<Vec<ModelSummary>> {
    BUILTINS
        .iter()
        .enumerate()
        .map(|(i, b)| {
            let fail = |reason: String| Error::File {
                name: b.file.to_string(),
                reason,
            };
            let (_, header) = ::safetensors::SafeTensors::read_metadata(b.bytes)
                .map_err(|e| fail(e.to_string()))?;
            let json = header.metadata().as_ref().and_then(|m| m.get(MODEL_KEY));
            let meta: ModelMeta =
                serde_json::from_str(json.ok_or_else(|| fail("no metadata".into()))?)
                    .map_err(|e| fail(e.to_string()))?;
            let parameters = header
                .tensors()
                .values()
                .map(|t| t.shape.iter().product::<usize>())
                .sum();
            let (prompts, vocabulary) = prompt_words(&meta.unet);
            Ok(ModelSummary {
                name: b.name,
                default: i == 0,
                file: b.file,
                about: b.about,
                resolution: meta.unet.image_size,
                parameters,
                bytes: b.bytes.len(),
                trained_steps: meta.trained_steps,
                prompts,
                vocabulary,
            })
        })
        .collect()
}

/// Loads a built-in model, named in messages as "the built-in model NAME (FILE)".
pub fn load_builtin(b: &BuiltIn, device: &Device) -> Result<LoadedModel> {
    load_bytes(
        &format!("the built-in model {} ({})", b.name, b.file),
        b.bytes,
        device,
    )
}
