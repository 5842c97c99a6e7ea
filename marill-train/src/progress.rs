//! Progress on stderr: a bar redrawn in place on a terminal, a line every 10 % otherwise
//! (logs stay readable in CI).

use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

static QUIET: AtomicBool = AtomicBool::new(false);

/// Silence (or restore) progress output for this process (tests, embedding hosts).
pub fn set_quiet(quiet: bool) {
    QUIET.store(quiet, Ordering::Relaxed);
}

/// Progress of one training run.
pub struct Progress {
    label: String,
    total: usize,
    done: usize,
    tokens: usize,
    start: Instant,
    last_draw: Instant,
    tty: bool,
    quiet: bool,
    ema: Option<f32>,
}

impl Progress {
    /// A run of `total` steps. Silent when `MARILL_QUIET` is set or after [`set_quiet`].
    pub fn new(label: &str, total: usize) -> Self {
        let now = Instant::now();
        Self {
            label: label.into(),
            total,
            done: 0,
            tokens: 0,
            start: now,
            last_draw: now,
            tty: std::io::stderr().is_terminal(),
            quiet: std::env::var_os("MARILL_QUIET").is_some() || QUIET.load(Ordering::Relaxed),
            ema: None,
        }
    }

    /// One step with its loss and the tokens it processed.
    pub fn step(&mut self, loss: f32, tokens: usize) {
        self.done += 1;
        self.tokens += tokens;
        self.ema = Some(match self.ema {
            Some(e) => 0.9 * e + 0.1 * loss,
            None => loss,
        });
        let tenth = (self.total / 10).max(1);
        let due = if self.tty {
            self.last_draw.elapsed().as_millis() >= 100 || self.done == self.total
        } else {
            self.done.is_multiple_of(tenth) || self.done == self.total
        };
        if due {
            self.draw();
            self.last_draw = Instant::now();
        }
    }

    fn draw(&self) {
        if self.quiet {
            return;
        }
        let secs = self.start.elapsed().as_secs_f64().max(1e-9);
        let width = 24;
        let filled = (self.done * width / self.total.max(1)).min(width);
        let bar: String = "#".repeat(filled) + &"-".repeat(width - filled);
        let line = format!(
            "{:<18} [{bar}] {:>5}/{:<5} loss {:>7.4} {:>8.0} tok/s {:>6.1}s",
            self.label,
            self.done,
            self.total,
            self.ema.unwrap_or(f32::NAN),
            self.tokens as f64 / secs,
            secs
        );
        let mut e = std::io::stderr().lock();
        let _ = if self.tty { write!(e, "\r{line}") } else { writeln!(e, "{line}") };
        let _ = e.flush();
    }

    /// End the bar's line.
    pub fn finish(&self) {
        if self.tty && !self.quiet {
            let _ = writeln!(std::io::stderr());
        }
    }
}
