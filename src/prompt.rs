//! Prompt text ↔ condition ids, from the model's own vocabulary.
//!
//! - Slot models (shapes): an optional article, then at most one word per slot (a colour
//!   and a shape), in any order: "a red circle", "blue", "triangle", or "" (unconditional).
//! - Text models: the words become token ids ([`crate::text::tokenizer`]), padded to the
//!   model's length; the prompt must follow the caption grammar ([`crate::text::grammar`]).

use crate::error::{Error, Result};
use crate::text::{grammar, tokenizer};
use crate::unet::{UNetConfig, Vocabulary};

/// The condition ids of `text` for a model with `config`.
pub fn encode(text: &str, config: &UNetConfig) -> Result<Vec<u32>> {
    match &config.text {
        None => parse(text, &config.vocab),
        Some(t) => {
            let ids = t.tokenizer().encode(text)?;
            grammar::parse(text, &tokenizer::words(text))?;
            Ok(ids)
        }
    }
}

/// The unconditional ids of a model: every slot's null token, or all padding.
pub fn null_ids(config: &UNetConfig) -> Vec<u32> {
    match &config.text {
        None => config.vocab.null_ids(),
        Some(t) => t.tokenizer().null_ids(),
    }
}

const ARTICLES: [&str; 3] = ["a", "an", "the"];

/// Parses `text` into one token id per slot (the slot's null id where a word is left out).
pub fn parse(text: &str, vocab: &Vocabulary) -> Result<Vec<u32>> {
    let mut ids = vocab.null_ids();
    let mut filled = vec![false; vocab.slots.len()];
    let words = tokenizer::words(text);
    for (i, w) in words.iter().enumerate() {
        if i == 0 && ARTICLES.contains(&w.as_str()) {
            continue;
        }
        let found = vocab
            .slots
            .iter()
            .enumerate()
            .find_map(|(s, slot)| slot.words.iter().position(|x| x == w).map(|p| (s, p)));
        let Some((slot, pos)) = found else {
            return Err(Error::UnknownWord {
                word: crate::error::clip(w),
                prompt: crate::error::clip(text),
                valid: valid_words(vocab),
            });
        };
        if filled[slot] {
            return Err(Error::Prompt {
                prompt: crate::error::clip(text),
                reason: format!(
                    "names two {} words; use at most one",
                    vocab.slots[slot].name
                ),
            });
        }
        filled[slot] = true;
        ids[slot] = pos as u32;
    }
    Ok(ids)
}

/// Every word the vocabulary accepts, slot by slot.
pub fn valid_words(vocab: &Vocabulary) -> String {
    let mut parts: Vec<String> = vocab
        .slots
        .iter()
        .map(|s| format!("{}: {}", s.name, s.words.join(", ")))
        .collect();
    if parts.is_empty() {
        parts.push("none: this model is unconditional, use an empty prompt".into());
    }
    parts.join("; ")
}

/// A file-name-friendly form of a prompt: "a red circle" → "a-red-circle".
pub fn slug(text: &str) -> String {
    let s: Vec<String> = text
        .split_whitespace()
        .map(|w| {
            w.chars()
                .filter(|c| c.is_ascii_alphanumeric())
                .collect::<String>()
                .to_lowercase()
        })
        .filter(|w| !w.is_empty())
        .collect();
    if s.is_empty() {
        "unconditional".into()
    } else {
        s.join("-")
    }
}
