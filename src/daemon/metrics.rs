//! Counters and latency figures for the health topic and `/metrics`.

use std::collections::{BTreeMap, VecDeque};
use std::time::Instant;

use crate::http::prometheus::Histogram;
use crate::wire::health::{Counters, Latency};
use crate::wire::ErrorCode;

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

/// Upper bounds of the latency histogram's buckets, seconds: from a fast classify on a GPU to a
/// long caption on a CPU.
const BUCKETS_S: [f64; 14] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0,
];

/// Every answer's latency, in buckets (kept for the process's life, as Prometheus expects).
#[derive(Debug, Clone, Default)]
struct Buckets {
    counts: [u64; BUCKETS_S.len()],
    count: u64,
    sum_s: f64,
}

impl Buckets {
    fn record(&mut self, s: f64) {
        if let Some(i) = BUCKETS_S.iter().position(|b| s <= *b) {
            self.counts[i] += 1;
        }
        self.count += 1;
        self.sum_s += s;
    }

    fn histogram(&self) -> Histogram {
        let cumulative = self
            .counts
            .iter()
            .scan(0, |acc, n| {
                *acc += n;
                Some(*acc)
            })
            .collect();
        Histogram {
            bounds_s: BUCKETS_S.to_vec(),
            cumulative,
            count: self.count,
            sum_s: self.sum_s,
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
    buckets: BTreeMap<&'static str, Buckets>,
    errors_by_code: BTreeMap<&'static str, u64>,
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
            buckets: BTreeMap::new(),
            errors_by_code: BTreeMap::new(),
        }
    }

    pub fn record_latency(&mut self, task: &'static str, ms: f64) {
        self.latency.entry(task).or_default().record(ms);
        self.buckets.entry(task).or_default().record(ms / 1000.0);
    }

    /// An error answer.
    pub fn record_error(&mut self, code: ErrorCode) {
        self.errors += 1;
        *self.errors_by_code.entry(code.as_str()).or_insert(0) += 1;
    }

    pub fn errors_by_code(&self) -> BTreeMap<&'static str, u64> {
        self.errors_by_code.clone()
    }

    /// Latency histograms by task, since the start.
    pub fn histograms(&self) -> BTreeMap<String, Histogram> {
        self.buckets
            .iter()
            .map(|(task, b)| ((*task).to_string(), b.histogram()))
            .collect()
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
    fn histograms_are_cumulative_and_count_everything() {
        let mut m = Metrics::new(Instant::now());
        for ms in [3.0, 7.0, 7.5, 400.0, 500_000.0] {
            m.record_latency("classify", ms);
        }
        m.record_error(ErrorCode::Overloaded);
        let h = &m.histograms()["classify"];
        assert_eq!(h.cumulative[0], 1, "3 ms <= 5 ms");
        assert_eq!(h.cumulative[1], 3, "two more <= 10 ms");
        assert_eq!(h.cumulative[6], 4, "400 ms <= 500 ms");
        assert_eq!(
            *h.cumulative.last().unwrap(),
            4,
            "500 s is above every bound"
        );
        assert_eq!(h.count, 5);
        assert_eq!(m.errors, 1);
        assert_eq!(m.errors_by_code()["overloaded"], 1);
    }

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
