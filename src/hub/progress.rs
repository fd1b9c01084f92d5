//! What a pull or pin shows while it works: an indicatif bar per file on a terminal, plain log
//! lines otherwise (journald, CI logs, `2> file`), where a redrawn bar would be noise.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use indicatif::{HumanBytes, ProgressBar, ProgressDrawTarget, ProgressStyle};

/// Plain mode logs a large file's progress at these fractions, so a long download shows life.
const MILESTONES: [u64; 3] = [25, 50, 75];

/// Below this size plain mode logs only the start and the end of a file.
const MILESTONE_MIN_BYTES: u64 = 64 << 20;

/// The reporter for one command run.
#[derive(Debug, Clone, Copy)]
pub struct Progress {
    /// Bars when stderr is a terminal, else lines.
    bars: bool,
}

impl Progress {
    /// Bars on a terminal, plain lines otherwise.
    pub fn auto() -> Self {
        Self {
            bars: std::io::stderr().is_terminal(),
        }
    }

    /// Plain lines whatever stderr is.
    pub fn plain() -> Self {
        Self { bars: false }
    }

    /// A line above any bar.
    pub fn note(&self, message: &str) {
        eprintln!("{message}");
    }

    /// Starts reporting on one file: `verb` says what happens ("downloading", "verifying").
    pub fn file(&self, label: &str, verb: &str, size: Option<u64>) -> FileProgress {
        let bar = self.bars.then(|| {
            let bar = match size {
                Some(size) => ProgressBar::new(size),
                None => ProgressBar::new_spinner(),
            };
            bar.set_draw_target(ProgressDrawTarget::stderr());
            let template = if size.is_some() {
                "{msg} [{bar:30.cyan/blue}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}"
            } else {
                "{spinner} {msg} {bytes} {bytes_per_sec}"
            };
            if let Ok(style) = ProgressStyle::with_template(template) {
                bar.set_style(style.progress_chars("=> "));
            }
            bar.set_message(format!("{verb} {label}"));
            bar.enable_steady_tick(Duration::from_millis(200));
            bar
        });
        if bar.is_none() {
            let what = size.map_or_else(String::new, |s| format!(" ({})", HumanBytes(s)));
            eprintln!("{label}: {verb}{what}");
        }
        FileProgress {
            bar,
            label: label.to_string(),
            size,
            started: Instant::now(),
            position: 0,
            resumed_at: 0,
            next_milestone: 0,
        }
    }
}

/// Progress of one file.
#[derive(Debug)]
pub struct FileProgress {
    bar: Option<ProgressBar>,
    label: String,
    size: Option<u64>,
    started: Instant,
    position: u64,
    /// Bytes that were already there (a resumed partial file), left out of the speed.
    resumed_at: u64,
    /// Index into [`MILESTONES`] of the next line plain mode prints.
    next_milestone: usize,
}

impl FileProgress {
    /// The transfer restarts at byte `from` (0, or the end of a partial file).
    pub fn restart_at(&mut self, from: u64) {
        self.resumed_at = from;
        self.position = from;
        self.started = Instant::now();
        match &self.bar {
            Some(bar) => {
                bar.reset_elapsed();
                bar.reset_eta();
                bar.set_position(from);
            }
            None if from > 0 => eprintln!("{}: resuming at {}", self.label, HumanBytes(from)),
            None => {}
        }
        self.next_milestone = self.milestones_passed();
    }

    /// `bytes` more arrived.
    pub fn advance(&mut self, bytes: u64) {
        self.position += bytes;
        if let Some(bar) = &self.bar {
            bar.set_position(self.position);
            return;
        }
        let passed = self.milestones_passed();
        if passed > self.next_milestone {
            self.next_milestone = passed;
            eprintln!(
                "{}: {}% ({} of {})",
                self.label,
                MILESTONES[passed - 1],
                HumanBytes(self.position),
                HumanBytes(self.size.unwrap_or(0))
            );
        }
    }

    /// A try failed and another follows after `delay`.
    pub fn retrying(&self, reason: &str, delay: Duration) {
        let line = format!(
            "{}: {reason}; trying again in {:.1} s",
            self.label,
            delay.as_secs_f64()
        );
        match &self.bar {
            Some(bar) => bar.println(line),
            None => eprintln!("{line}"),
        }
    }

    /// Done: `outcome` says how ("downloaded", "already present").
    pub fn finish(self, outcome: &str) {
        let moved = self.position.saturating_sub(self.resumed_at);
        let secs = self.started.elapsed().as_secs_f64();
        let speed = if moved > 0 && secs > 0.0 {
            format!(", {}/s", HumanBytes((moved as f64 / secs) as u64))
        } else {
            String::new()
        };
        let line = format!(
            "{}: {outcome} ({}{speed})",
            self.label,
            HumanBytes(self.position)
        );
        match &self.bar {
            Some(bar) => {
                bar.finish_and_clear();
                eprintln!("{line}");
            }
            None => eprintln!("{line}"),
        }
    }

    /// Gave up; the caller reports why.
    pub fn abandon(self) {
        if let Some(bar) = &self.bar {
            bar.abandon();
        }
    }

    /// How many of [`MILESTONES`] the position has reached (0 when they do not apply).
    fn milestones_passed(&self) -> usize {
        match self.size {
            Some(size) if size >= MILESTONE_MIN_BYTES => MILESTONES
                .iter()
                .take_while(|&&m| self.position.saturating_mul(100) >= m * size)
                .count(),
            _ => 0,
        }
    }
}
