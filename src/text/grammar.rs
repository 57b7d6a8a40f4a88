//! The caption grammar a text model is taught: `""` (unconditional), `[a|an] N`, or
//! `[a|an] N REL [a|an] M` with REL one of "with", "and", "left of", "right of", "above",
//! "below". Prompts outside it (a relation with one noun, no noun at all) are refused with a
//! one-line error, since the model could only guess at them.

use crate::data::emoji::Relation;
use crate::error::{Error, Result};

/// The grammar's words besides the nouns, in vocabulary order.
pub const FUNCTION_WORDS: [&str; 9] = [
    "a", "an", "with", "and", "left", "right", "of", "above", "below",
];

/// A parsed caption: the nouns in order and the relation between two.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caption {
    pub nouns: Vec<String>,
    pub relation: Option<Relation>,
}

fn relation_at(words: &[String], i: usize) -> Option<(Relation, usize)> {
    let w = words.get(i)?.as_str();
    let next = words.get(i + 1).map(String::as_str);
    match (w, next) {
        ("with", _) => Some((Relation::With, 1)),
        ("and", _) => Some((Relation::And, 1)),
        ("above", _) => Some((Relation::Above, 1)),
        ("below", _) => Some((Relation::Below, 1)),
        ("left", Some("of")) => Some((Relation::LeftOf, 2)),
        ("right", Some("of")) => Some((Relation::RightOf, 2)),
        _ => None,
    }
}

/// Parses the words of a prompt (already checked against the vocabulary).
pub fn parse(prompt: &str, words: &[String]) -> Result<Caption> {
    let fail = |reason: &str| Error::Prompt {
        prompt: crate::error::clip(prompt),
        reason: reason.to_string(),
    };
    let mut nouns = Vec::new();
    let mut relation = None;
    let mut i = 0;
    while i < words.len() {
        let w = words[i].as_str();
        if w == "a" || w == "an" {
            i += 1;
        } else if let Some((r, len)) = relation_at(words, i) {
            if nouns.len() != 1 || relation.is_some() {
                return Err(fail(&format!(
                    "puts '{}' where a noun belongs; write e.g. \"a cat {} a dog\"",
                    r.words(),
                    r.words()
                )));
            }
            relation = Some(r);
            i += len;
        } else if FUNCTION_WORDS.contains(&w) {
            return Err(fail(&format!("uses '{w}' outside a relation")));
        } else {
            if nouns.len() == 2 || (nouns.len() == 1 && relation.is_none()) {
                return Err(fail(
                    "names nouns without a relation between them; join two with \"with\", \"and\", \"left of\", \"right of\", \"above\" or \"below\"",
                ));
            }
            nouns.push(w.to_string());
            i += 1;
        }
    }
    if relation.is_some() && nouns.len() < 2 {
        return Err(fail(
            "has a relation with one noun; name a noun on each side",
        ));
    }
    if nouns.is_empty() && !words.is_empty() {
        return Err(fail("names no noun"));
    }
    Ok(Caption { nouns, relation })
}
