//! How long-running library work reports progress without printing: the CLI implements
//! [`Progress`] with indicatif bars; tests and benches use [`Silent`].

/// Receives progress from library jobs. Must be `Sync`: frames are written from rayon threads.
pub trait Progress: Sync {
    /// A new stage begins, with `total` units of work.
    fn stage(&self, name: &str, total: u64);
    /// `n` more units of the current stage are done.
    fn advance(&self, n: u64);
    /// A one-line note for the user (for example, that an image was scaled down).
    fn note(&self, msg: &str);
    /// The current stage is over.
    fn finish(&self);
    /// A short live status shown beside the bar (e.g. the loss).
    fn status(&self, _msg: &str) {}
}

/// Reports nothing.
pub struct Silent;

impl Progress for Silent {
    fn stage(&self, _: &str, _: u64) {}
    fn advance(&self, _: u64) {}
    fn note(&self, _: &str) {}
    fn finish(&self) {}
}
