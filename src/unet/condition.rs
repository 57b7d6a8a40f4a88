//! What a prompt becomes inside the UNet, computed once per run: the slot embeddings that are
//! added to the time embedding (slot models) and the text encoder's context that
//! cross-attention reads (text models). Conditions can be batched, split and blended, which
//! is what guidance and prompt interpolation need.

use candle_core::{Result, Tensor};

/// An encoded prompt batch of B images.
#[derive(Debug, Clone)]
pub struct Condition {
    /// Per prompt slot, its embedding `[B, temb]` (empty for text models).
    pub(crate) slots: Vec<Tensor>,
    /// The text context `[B, L, d]` (text models).
    pub(crate) context: Option<Tensor>,
    batch: usize,
}

impl Condition {
    pub(crate) fn new(slots: Vec<Tensor>, context: Option<Tensor>, batch: usize) -> Self {
        Self {
            slots,
            context,
            batch,
        }
    }

    /// Images in the batch.
    pub fn batch(&self) -> usize {
        self.batch
    }

    fn map(&self, f: impl Fn(&Tensor) -> Result<Tensor>, batch: usize) -> Result<Self> {
        Ok(Self {
            slots: self.slots.iter().map(&f).collect::<Result<_>>()?,
            context: self.context.as_ref().map(&f).transpose()?,
            batch,
        })
    }

    fn zip(
        &self,
        other: &Self,
        f: impl Fn(&Tensor, &Tensor) -> Result<Tensor>,
        batch: usize,
    ) -> Result<Self> {
        if self.slots.len() != other.slots.len()
            || self.context.is_some() != other.context.is_some()
        {
            candle_core::bail!("condition: the two conditions come from different models");
        }
        let slots = self.slots.iter().zip(&other.slots);
        Ok(Self {
            slots: slots.map(|(a, b)| f(a, b)).collect::<Result<_>>()?,
            context: match (&self.context, &other.context) {
                (Some(a), Some(b)) => Some(f(a, b)?),
                _ => None,
            },
            batch,
        })
    }

    /// Images `start..start + len` of the batch.
    pub fn narrow(&self, start: usize, len: usize) -> Result<Self> {
        self.map(|t| t.narrow(0, start, len), len)
    }

    /// This batch followed by `other`'s.
    pub fn cat(&self, other: &Self) -> Result<Self> {
        let batch = self.batch + other.batch;
        self.zip(other, |a, b| Tensor::cat(&[a, b], 0), batch)
    }

    /// Linear interpolation (1 − w)·self + w·other, exact at w = 0 and w = 1.
    pub fn lerp(&self, other: &Self, w: f64) -> Result<Self> {
        if self.batch != other.batch {
            candle_core::bail!(
                "condition: batches {} and {} differ",
                self.batch,
                other.batch
            );
        }
        let mix = |a: &Tensor, b: &Tensor| a.affine(1.0 - w, 0.0)? + b.affine(w, 0.0)?;
        self.zip(other, mix, self.batch)
    }

    /// Whether both hold the same values.
    pub fn same_as(&self, other: &Self) -> Result<bool> {
        if self.batch != other.batch {
            return Ok(false);
        }
        let eq = |a: &Tensor, b: &Tensor| -> Result<bool> {
            Ok(a.ne(b)?.flatten_all()?.max(0)?.to_scalar::<u8>()? == 0)
        };
        let slots = self.slots.iter().zip(&other.slots);
        for (a, b) in slots {
            if !eq(a, b)? {
                return Ok(false);
            }
        }
        match (&self.context, &other.context) {
            (Some(a), Some(b)) => eq(a, b),
            _ => Ok(true),
        }
    }
}
