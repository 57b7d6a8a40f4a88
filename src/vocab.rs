//! A slot model's prompt vocabulary: the prompt slots (e.g. colour and shape) and the words
//! each accepts. The UNet embeds it, prompts are encoded with it and the datasets name their
//! classes with it, so it sits below all three.

use serde::{Deserialize, Serialize};

/// One slot of the prompt, e.g. the colour word; each slot also has a learned null token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Slot {
    /// The slot's name, e.g. `colour`.
    pub name: String,
    /// The words the slot accepts; word i has token id i, and the null token is `words.len()`.
    pub words: Vec<String>,
}

impl Slot {
    /// The token id that means "this slot left out".
    pub fn null_id(&self) -> u32 {
        self.words.len() as u32
    }
}

/// The prompt vocabulary: one embedding table per slot, summed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Vocabulary {
    pub slots: Vec<Slot>,
}

impl Vocabulary {
    /// The shapes dataset's vocabulary: six colours and six shapes.
    pub fn shapes() -> Self {
        let words = |ws: &[&str]| ws.iter().map(|w| w.to_string()).collect();
        Self {
            slots: vec![
                Slot {
                    name: "colour".into(),
                    words: words(&["red", "orange", "yellow", "green", "blue", "purple"]),
                },
                Slot {
                    name: "shape".into(),
                    words: words(&["circle", "square", "triangle", "diamond", "cross", "star"]),
                },
            ],
        }
    }

    /// Token ids that leave every slot out (the unconditional prompt).
    pub fn null_ids(&self) -> Vec<u32> {
        self.slots.iter().map(Slot::null_id).collect()
    }
}
