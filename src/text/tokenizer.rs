//! Word-level tokens: a prompt is lower-cased and split on spaces and commas; each word must
//! be in the vocabulary (an unknown word is an error that suggests the closest words); the
//! ids are padded with `<pad>` (id 0) to the model's maximum length.

use crate::error::{Error, Result};

/// Id of the padding token.
pub const PAD_ID: u32 = 0;

/// A tokenizer over a model's vocabulary.
#[derive(Debug, Clone, Copy)]
pub struct Tokenizer<'a> {
    vocab: &'a [String],
    max_len: usize,
}

/// Punctuation that carries no meaning in a prompt: "A cat with a computer." is "a cat with a
/// computer".
pub const IGNORED_PUNCTUATION: [char; 11] =
    ['.', '!', '?', ';', ':', '"', '\'', '“', '”', '‘', '’'];

/// The words of a prompt as people type them: lower case, split on whitespace and commas,
/// without [`IGNORED_PUNCTUATION`].
pub fn words(text: &str) -> Vec<String> {
    text.split(|c: char| c.is_whitespace() || c == ',')
        .map(|w| w.replace(IGNORED_PUNCTUATION, "").to_lowercase())
        .filter(|w| !w.is_empty())
        .collect()
}

/// The prompt the model reads: its [`words`] joined by single spaces.
pub fn normalize(text: &str) -> String {
    words(text).join(" ")
}

impl<'a> Tokenizer<'a> {
    pub fn new(vocab: &'a [String], max_len: usize) -> Self {
        Self { vocab, max_len }
    }

    /// The id of `word`, if it is in the vocabulary (the padding token is not a word).
    pub fn id(&self, word: &str) -> Option<u32> {
        self.vocab
            .iter()
            .skip(1)
            .position(|w| w == word)
            .map(|p| p as u32 + 1)
    }

    /// `max_len` ids for `text`: its words, then padding.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        let words = words(text);
        if words.len() > self.max_len {
            return Err(Error::Prompt {
                prompt: crate::error::clip(text),
                reason: format!(
                    "has {} words; this model reads at most {}",
                    words.len(),
                    self.max_len
                ),
            });
        }
        let mut ids = Vec::with_capacity(self.max_len);
        for w in &words {
            let id = self.id(w).ok_or_else(|| Error::UnknownWord {
                word: crate::error::clip(w),
                prompt: crate::error::clip(text),
                valid: format!("closest: {}", self.closest(w, 3).join(", ")),
            })?;
            ids.push(id);
        }
        ids.resize(self.max_len, PAD_ID);
        Ok(ids)
    }

    /// The words of `ids`, padding left out.
    pub fn decode(&self, ids: &[u32]) -> String {
        ids.iter()
            .filter(|&&id| id != PAD_ID)
            .filter_map(|&id| self.vocab.get(id as usize))
            .cloned()
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// The unconditional prompt: all padding.
    pub fn null_ids(&self) -> Vec<u32> {
        vec![PAD_ID; self.max_len]
    }

    /// The `n` vocabulary words closest to `word` by edit distance (ties in vocabulary order).
    pub fn closest(&self, word: &str, n: usize) -> Vec<String> {
        let mut scored: Vec<(usize, usize, &String)> = self
            .vocab
            .iter()
            .enumerate()
            .skip(1)
            .map(|(i, w)| (strsim::levenshtein(word, w), i, w))
            .collect();
        scored.sort();
        scored
            .into_iter()
            .take(n)
            .map(|(_, _, w)| w.clone())
            .collect()
    }
}
