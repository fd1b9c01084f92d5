//! Counters and latency figures for the health topic.

use std::collections::{BTreeMap, VecDeque};
use std::time::Instant;

use crate::wire::health::{Counters, Latency};

/// How many recent answers the latency percentiles cover, per task.
const WINDOW: usize = 1024;

/// The latencies of the most recent answers.
#[derive(Debug, Default)]
pub struct LatencyWindow {
    recent: VecDeque<f64>,
}

impl LatencyWindow {
    pub fn record(&mut self, ms: f64) {
        if self.recent.len() == WINDOW {
            self.recent.pop_front();
        }
        self.recent.push_back(ms);
    }

    /// Nearest-rank percentiles; zeros when empty.
    pub fn summary(&self) -> Latency {
        let mut sorted: Vec<f64> = self.recent.iter().copied().collect();
        sorted.sort_by(f64::total_cmp);
        let pick = |q: f64| {
            if sorted.is_empty() {
                return 0.0;
            }
            let rank = (q * sorted.len() as f64).ceil() as usize;
            round(sorted[rank.clamp(1, sorted.len()) - 1])
        };
        Latency {
            p50: pick(0.50),
            p95: pick(0.95),
            p99: pick(0.99),
            n: sorted.len(),
        }
    }
}

/// Milliseconds to three decimals, so payloads stay short.
pub fn round(ms: f64) -> f64 {
    (ms * 1000.0).round() / 1000.0
}

#[derive(Debug)]
pub struct Metrics {
    pub started: Instant,
    pub requests: u64,
    pub errors: u64,
    pub overloaded: u64,
    /// Requests the broker delivered again and that were not answered twice.
    pub redeliveries: u64,
    pub reconnects: u64,
    latency: BTreeMap<&'static str, LatencyWindow>,
}

impl Metrics {
    pub fn new(started: Instant) -> Self {
        Self {
            started,
            requests: 0,
            errors: 0,
            overloaded: 0,
            redeliveries: 0,
            reconnects: 0,
            latency: BTreeMap::new(),
        }
    }

    pub fn record_latency(&mut self, task: &'static str, ms: f64) {
        self.latency.entry(task).or_default().record(ms);
    }

    pub fn latency(&self) -> BTreeMap<String, Latency> {
        self.latency
            .iter()
            .map(|(task, w)| ((*task).to_string(), w.summary()))
            .collect()
    }

    pub fn counters(&self, delivered: u64, dropped: u64) -> Counters {
        Counters {
            requests: self.requests,
            errors: self.errors,
            overloaded: self.overloaded,
            redeliveries: self.redeliveries,
            results_delivered: delivered,
            results_dropped: dropped,
            // Filled in by the caller, which owns the cameras.
            frames_captured: 0,
            frames_dropped: 0,
            captions: 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_by_nearest_rank() {
        let mut w = LatencyWindow::default();
        assert_eq!(w.summary().n, 0);
        for ms in (1..=100).rev() {
            w.record(f64::from(ms));
        }
        let s = w.summary();
        assert_eq!((s.p50, s.p95, s.p99, s.n), (50.0, 95.0, 99.0, 100));
    }

    #[test]
    fn only_the_recent_window_counts() {
        let mut w = LatencyWindow::default();
        for _ in 0..WINDOW {
            w.record(1000.0);
        }
        for _ in 0..WINDOW {
            w.record(1.0);
        }
        assert_eq!(w.summary().p99, 1.0);
    }
}
