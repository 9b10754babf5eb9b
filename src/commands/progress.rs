//! A one-line progress bar on stderr: bar, loss, iterations per second, time left. On a terminal
//! it redraws in place; otherwise (logs, CI) it prints a line every tenth of the run. A bar may
//! wait a while before it first shows, so that short work (an evaluation of a few seconds) leaves
//! no trace.

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

pub struct Progress {
    label: String,
    total: u64,
    /// Steps timed so far and the time they took (evaluations and checkpoints excluded).
    timed_steps: u64,
    busy: Duration,
    last_draw: Option<Instant>,
    last_tenth: u64,
    terminal: bool,
    /// What one step is ("it", "img").
    unit: &'static str,
    created: Instant,
    /// Nothing is drawn before this long after creation.
    hidden_for: Duration,
}

fn clock(duration: Duration) -> String {
    let s = duration.as_secs();
    if s >= 3600 { format!("{}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60) } else { format!("{}:{:02}", s / 60, s % 60) }
}

impl Progress {
    /// `start` is where a resumed run picks up.
    pub fn new(label: &str, start: u64, total: u64) -> Self {
        Self {
            label: label.to_string(),
            total,
            timed_steps: 0,
            busy: Duration::ZERO,
            last_draw: None,
            last_tenth: start * 10 / total.max(1),
            terminal: std::io::stderr().is_terminal(),
            unit: "it",
            created: Instant::now(),
            hidden_for: Duration::ZERO,
        }
    }

    pub fn with_unit(self, unit: &'static str) -> Self {
        Self { unit, ..self }
    }

    /// Draws nothing until `delay` has passed: for work that is often over before then.
    pub fn hidden_for(self, delay: Duration) -> Self {
        Self { hidden_for: delay, ..self }
    }

    /// `step_time`: how long the `steps` steps up to `done` took, when known.
    pub fn update(&mut self, done: u64, loss: Option<f64>, steps: u64, step_time: Option<Duration>) {
        if let Some(t) = step_time {
            self.timed_steps += steps;
            self.busy += t;
        }
        if self.created.elapsed() < self.hidden_for {
            return;
        }
        let rate = if self.busy.is_zero() { 0.0 } else { self.timed_steps as f64 / self.busy.as_secs_f64() };
        let eta = if rate > 0.0 { Duration::from_secs_f64((self.total - done) as f64 / rate) } else { Duration::ZERO };
        let width = 24;
        let filled = (done as usize * width) / self.total.max(1) as usize;
        let bar: String = (0..width)
            .map(|i| {
                if i < filled {
                    '='
                } else if i == filled {
                    '>'
                } else {
                    ' '
                }
            })
            .collect();
        let loss = loss.map_or(String::new(), |l| format!(" loss {l:.4}"));
        let line = format!("{} [{bar}] {done}/{}{loss} {rate:.2} {}/s ETA {}", self.label, self.total, self.unit, clock(eta));
        if self.terminal {
            let now = Instant::now();
            let due = self.last_draw.is_none_or(|t| now - t >= Duration::from_millis(100)) || done == self.total;
            if due {
                eprint!("\r{line}\x1b[K");
                let _ = std::io::stderr().flush();
                self.last_draw = Some(now);
            }
        } else {
            let tenth = done * 10 / self.total.max(1);
            if tenth > self.last_tenth || done == self.total {
                eprintln!("{line}");
                self.last_tenth = tenth;
            }
        }
    }

    /// Moves off the progress line before other output.
    pub fn interrupt(&mut self) {
        if self.terminal && self.last_draw.is_some() {
            eprintln!();
            self.last_draw = None;
        }
    }
}

/// A bar for images worked through in batches (an evaluation's test images, a sprite's photos),
/// fed `(done, total)` counts after each batch: it starts at the first count, shows only when the
/// work lasts over two seconds, and ends (its line closed) when `done` reaches `total`, ready for
/// the next run through.
pub struct ImageCountBar {
    label: &'static str,
    /// The bar, the count at the last report and when it came.
    current: Option<(Progress, usize, Instant)>,
}

impl ImageCountBar {
    pub fn new(label: &'static str) -> Self {
        Self { label, current: None }
    }

    pub fn update(&mut self, done: usize, total: usize) {
        let now = Instant::now();
        match &mut self.current {
            None => {
                let mut bar = Progress::new(self.label, 0, total as u64).with_unit("img").hidden_for(Duration::from_secs(2));
                // The first batch's time includes starting the decoding workers: left out of the rate.
                bar.update(done as u64, None, done as u64, None);
                self.current = Some((bar, done, now));
            }
            Some((bar, last_done, last_time)) => {
                bar.update(done as u64, None, (done - *last_done) as u64, Some(now - *last_time));
                (*last_done, *last_time) = (done, now);
            }
        }
        if done >= total
            && let Some((mut bar, ..)) = self.current.take()
        {
            bar.interrupt();
        }
    }
}

/// An evaluation cut short (an unreadable image, say) leaves no half-drawn line for the error.
impl Drop for ImageCountBar {
    fn drop(&mut self) {
        if let Some((bar, ..)) = &mut self.current {
            bar.interrupt();
        }
    }
}

/// `n` with a comma every three digits (`12,612`), as the published dataset sizes are written.
pub(crate) fn thousands(n: usize) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}
