//! Text conditioning in miniature, as Stable Diffusion does it: a word-level [`tokenizer`]
//! over the model's own vocabulary (stored in the model file), a caption [`grammar`] that
//! refuses prompts the model was never taught, and a small transformer [`encoder`] whose
//! per-token outputs the UNet attends to through cross-attention.

pub mod encoder;
pub mod grammar;
pub mod tokenizer;

use serde::{Deserialize, Serialize};

pub use encoder::TextEncoder;
pub use tokenizer::Tokenizer;

/// The text encoder's shape and vocabulary; part of a text model's config.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TextConfig {
    /// The words; token id i is word i, and id 0 is the padding token `<pad>`.
    pub vocab: Vec<String>,
    /// Tokens per prompt (shorter prompts are padded; the empty prompt is all padding).
    pub max_len: usize,
    /// Width of the token embeddings and of the context the UNet attends to.
    pub dim: usize,
    /// Transformer layers.
    pub layers: usize,
    /// Attention heads per layer.
    pub heads: usize,
}

/// The padding token.
pub const PAD: &str = "<pad>";

impl TextConfig {
    /// The emoji-scene vocabulary: padding, the grammar's function words, then the nouns.
    pub fn emoji() -> Self {
        let mut vocab: Vec<String> = std::iter::once(PAD)
            .chain(grammar::FUNCTION_WORDS.iter().copied())
            .map(String::from)
            .collect();
        vocab.extend(crate::data::emoji::NOUNS.iter().map(|n| n.name.to_string()));
        Self {
            vocab,
            max_len: 8,
            dim: 64,
            layers: 2,
            heads: 4,
        }
    }

    /// Checks the sizes fit together and the vocabulary starts with the padding token.
    pub fn validate(&self) -> crate::Result<()> {
        let bad = |reason: String| {
            Err(crate::Error::Config {
                what: "text",
                reason,
            })
        };
        if self.vocab.first().map(String::as_str) != Some(PAD) {
            return bad(format!("the vocabulary must start with '{PAD}'"));
        }
        if self.max_len > 256 || self.dim > 2048 || self.layers > 24 || self.vocab.len() > 100_000 {
            return bad(format!(
                "max_len {}, dim {}, layers {} or a vocabulary of {} words is above the limits (256, 2048, 24, 100000)",
                self.max_len,
                self.dim,
                self.layers,
                self.vocab.len()
            ));
        }
        if self.max_len == 0 || self.dim == 0 || self.heads == 0 || self.dim % self.heads != 0 {
            return bad(format!(
                "max_len {} and dim {} must be non-zero, dim a multiple of heads {}",
                self.max_len, self.dim, self.heads
            ));
        }
        Ok(())
    }

    /// The tokenizer over this vocabulary.
    pub fn tokenizer(&self) -> Tokenizer<'_> {
        Tokenizer::new(&self.vocab, self.max_len)
    }
}
