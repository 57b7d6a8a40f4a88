//! indicatif progress bars on stderr, labelled with the stage; hidden with `--quiet` or when
//! stderr is not a terminal. The library reports through [`Progress`]; only this file draws.

use std::io::IsTerminal;
use std::sync::Mutex;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use diffuse::progress::Progress;

/// The CLI's [`Progress`]: one bar per stage, and notes on stderr unless `--quiet`.
pub struct Bars {
    quiet: bool,
    /// Whether bars are drawn (a terminal, and not `--quiet`).
    pub visible: bool,
    bar: Mutex<Option<ProgressBar>>,
}

impl Bars {
    pub fn new(quiet: bool) -> Self {
        Self {
            quiet,
            visible: !quiet && std::io::stderr().is_terminal(),
            bar: Mutex::new(None),
        }
    }

    /// The current bar, if any; a poisoned lock (a panic elsewhere) just hides it.
    fn with_bar(&self, f: impl FnOnce(&mut Option<ProgressBar>)) {
        if let Ok(mut bar) = self.bar.lock() {
            f(&mut bar);
        }
    }
}

/// A bar labelled with its stage: `  denoising [=====>    ] 12/20 3s eta 2s`.
fn style() -> ProgressStyle {
    ProgressStyle::with_template("{prefix:>16} [{bar:30}] {pos}/{len} {elapsed} eta {eta} {msg}")
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ")
}

/// A stage of one indivisible unit turns a spinner with the time spent, never a bar frozen
/// at 0/1.
fn spinner_style() -> ProgressStyle {
    ProgressStyle::with_template("{prefix:>16} {spinner} {elapsed} {msg}")
        .unwrap_or_else(|_| ProgressStyle::default_spinner())
}

impl Progress for Bars {
    fn stage(&self, name: &str, total: u64) {
        let bar = if self.visible && total <= 1 {
            let b = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
            b.set_style(spinner_style());
            b.enable_steady_tick(std::time::Duration::from_millis(120));
            b
        } else if self.visible {
            let b = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
            b.set_style(style());
            b
        } else {
            ProgressBar::hidden()
        };
        bar.set_prefix(name.to_string());
        self.with_bar(|b| *b = Some(bar));
    }

    fn advance(&self, n: u64) {
        self.with_bar(|b| {
            if let Some(b) = b.as_ref() {
                b.inc(n);
            }
        });
    }

    fn note(&self, msg: &str) {
        if !self.quiet {
            eprintln!("note: {msg}");
        }
    }

    fn status(&self, msg: &str) {
        self.with_bar(|b| {
            if let Some(b) = b.as_ref() {
                b.set_message(msg.to_string());
            }
        });
    }

    fn finish(&self) {
        self.with_bar(|b| {
            if let Some(b) = b.take() {
                b.finish_and_clear();
            }
        });
    }
}
