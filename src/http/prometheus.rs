//! `GET /metrics`: the daemon's figures in the Prometheus text exposition format (version
//! 0.0.4), as Triton, TGI and LoRAX users scrape them: requests and errors by code, answer
//! latency histograms per task, queue depths, model state, camera frames and captions, the
//! adapter update serving each classifier, and the HTTP API's own requests by route and status.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use crate::wire::health::{CameraHealth, Health};
use crate::wire::ErrorCode;

/// The `Content-Type` of the text format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// A latency histogram: counts at or below each bound (cumulative), in seconds.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Histogram {
    pub bounds_s: Vec<f64>,
    /// `cumulative[i]`: answers that took at most `bounds_s[i]`.
    pub cumulative: Vec<u64>,
    pub count: u64,
    pub sum_s: f64,
}

/// What the daemon's core knows for one scrape.
#[derive(Debug, Clone)]
pub struct MetricsSnapshot {
    pub health: Health,
    /// Error answers by code.
    pub errors: BTreeMap<&'static str, u64>,
    /// Answer latency by task (`classify`, `caption`, `vqa`, `camera_caption`).
    pub latency: BTreeMap<String, Histogram>,
}

/// HTTP requests answered, by (route, status).
pub type HttpCounts = BTreeMap<(String, u16), u64>;

/// A label value with `\`, `"` and newlines escaped, as the format asks.
fn label(v: &str) -> String {
    v.replace('\\', r"\\")
        .replace('"', r#"\""#)
        .replace('\n', r"\n")
}

struct Out(String);

impl Out {
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.0, "# HELP {name} {help}");
        let _ = writeln!(self.0, "# TYPE {name} {kind}");
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: f64) {
        self.0.push_str(name);
        if !labels.is_empty() {
            let inner: Vec<String> = labels
                .iter()
                .map(|(k, v)| format!("{k}=\"{}\"", label(v)))
                .collect();
            let _ = write!(self.0, "{{{}}}", inner.join(","));
        }
        let _ = writeln!(self.0, " {}", number(value));
    }

    fn one(&mut self, name: &str, kind: &str, help: &str, value: f64) {
        self.family(name, kind, help);
        self.sample(name, &[], value);
    }
}

/// A sample value: integers without a fraction, `+Inf`/`NaN` as the format spells them.
fn number(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v.is_infinite() {
        if v > 0.0 { "+Inf" } else { "-Inf" }.into()
    } else if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{v:.0}")
    } else {
        format!("{v}")
    }
}

#[allow(clippy::cast_precision_loss)] // counters stay far below 2^53
pub fn render(s: &MetricsSnapshot, http: &HttpCounts) -> String {
    let h = &s.health;
    let c = &h.counters;
    let mut o = Out(String::new());
    o.one(
        "landfall_requests_total",
        "counter",
        "Requests received over MQTT and HTTP, answered or refused.",
        c.requests as f64,
    );
    o.family(
        "landfall_errors_total",
        "counter",
        "Error answers, by the contract's error code.",
    );
    for code in ErrorCode::ALL {
        let n = s.errors.get(code.as_str()).copied().unwrap_or(0);
        o.sample(
            "landfall_errors_total",
            &[("code", code.as_str())],
            n as f64,
        );
    }
    o.one(
        "landfall_overloaded_total",
        "counter",
        "Requests refused because the queues were full.",
        c.overloaded as f64,
    );
    o.one(
        "landfall_redeliveries_total",
        "counter",
        "Requests the broker delivered again (not answered twice).",
        c.redeliveries as f64,
    );
    o.one(
        "landfall_results_delivered_total",
        "counter",
        "MQTT answers the broker acknowledged.",
        c.results_delivered as f64,
    );
    o.one(
        "landfall_results_dropped_total",
        "counter",
        "MQTT answers dropped (offline queue full or expired).",
        c.results_dropped as f64,
    );
    o.family(
        "landfall_request_duration_seconds",
        "histogram",
        "From a request's arrival to its answer, by task.",
    );
    for (task, hist) in &s.latency {
        let name = "landfall_request_duration_seconds";
        for (bound, n) in hist.bounds_s.iter().zip(&hist.cumulative) {
            let le = number(*bound);
            o.sample(
                &format!("{name}_bucket"),
                &[("task", task), ("le", &le)],
                *n as f64,
            );
        }
        o.sample(
            &format!("{name}_bucket"),
            &[("task", task), ("le", "+Inf")],
            hist.count as f64,
        );
        o.sample(&format!("{name}_sum"), &[("task", task)], hist.sum_s);
        o.sample(
            &format!("{name}_count"),
            &[("task", task)],
            hist.count as f64,
        );
    }
    o.family(
        "landfall_queue_depth",
        "gauge",
        "Jobs waiting, by queue (interactive and periodic: for the engine; engine: in it; outbox and spooled: answers not yet delivered).",
    );
    let q = &h.queues;
    for (name, n) in [
        ("interactive", q.interactive),
        ("periodic", q.periodic),
        ("engine", q.engine),
        ("outbox", q.outbox),
        ("spooled", q.spooled),
    ] {
        o.sample("landfall_queue_depth", &[("queue", name)], n as f64);
    }
    o.family(
        "landfall_model_loaded",
        "gauge",
        "1 when the model is loaded and serving, 0 when missing or failed.",
    );
    for (name, m) in &h.models {
        let up = f64::from(u8::from(m.state == "loaded"));
        o.sample(
            "landfall_model_loaded",
            &[("model", name), ("role", "classifier")],
            up,
        );
    }
    let up = f64::from(u8::from(h.captioner.state == "loaded"));
    o.sample(
        "landfall_model_loaded",
        &[("model", "captioner"), ("role", "captioner")],
        up,
    );
    o.family(
        "landfall_adapter_version",
        "gauge",
        "The adapter update serving each classifier (0: the adapter the config names).",
    );
    for (name, m) in &h.models {
        let v = m.adapter_version.flatten().unwrap_or(0);
        o.sample(
            "landfall_adapter_version",
            &[("classifier", name)],
            v as f64,
        );
    }
    type Count = fn(&CameraHealth) -> u64;
    let camera_counters: [(&str, &str, Count); 3] = [
        (
            "landfall_camera_frames_captured_total",
            "Frames captured, by camera.",
            |c| c.captured,
        ),
        (
            "landfall_camera_frames_dropped_total",
            "Frames replaced before anything used them, by camera.",
            |c| c.dropped,
        ),
        (
            "landfall_camera_captions_total",
            "Periodic captions published, by camera.",
            |c| c.captions,
        ),
    ];
    for (metric, help, count) in camera_counters {
        o.family(metric, "counter", help);
        for (cam, ch) in &h.cameras {
            o.sample(metric, &[("camera", cam)], count(ch) as f64);
        }
    }
    o.family(
        "landfall_camera_up",
        "gauge",
        "1 while the camera delivers frames.",
    );
    for (cam, ch) in &h.cameras {
        o.sample(
            "landfall_camera_up",
            &[("camera", cam)],
            f64::from(u8::from(ch.state == "ok")),
        );
    }
    o.one(
        "landfall_resident_memory_bytes",
        "gauge",
        "Resident memory of the daemon.",
        h.system.rss_bytes as f64,
    );
    o.one(
        "landfall_uptime_seconds",
        "gauge",
        "Seconds since the daemon started.",
        h.uptime_s as f64,
    );
    o.one(
        "landfall_mqtt_connected",
        "gauge",
        "1 while connected to the MQTT broker.",
        f64::from(u8::from(h.mqtt.connected)),
    );
    o.one(
        "landfall_mqtt_reconnects_total",
        "counter",
        "Reconnections to the MQTT broker.",
        h.mqtt.reconnects as f64,
    );
    o.family(
        "landfall_http_requests_total",
        "counter",
        "HTTP API requests answered, by route and status.",
    );
    for ((route, status), n) in http {
        let status = status.to_string();
        o.sample(
            "landfall_http_requests_total",
            &[("route", route), ("status", &status)],
            *n as f64,
        );
    }
    o.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_are_escaped_and_numbers_spelled_as_the_format_wants() {
        assert_eq!(label("a\"b\\c\nd"), r#"a\"b\\c\nd"#);
        assert_eq!(number(3.0), "3");
        assert_eq!(number(0.025), "0.025");
        assert_eq!(number(f64::INFINITY), "+Inf");
        let mut o = Out(String::new());
        o.sample("m", &[("task", "vqa"), ("le", "0.5")], 2.0);
        assert_eq!(o.0, "m{task=\"vqa\",le=\"0.5\"} 2\n");
    }
}
