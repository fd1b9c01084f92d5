//! What the daemon costs on top of the model: `cargo bench --bench daemon_overhead`.
//!
//! One run measures, on the zh_qv fixture classifier (a tiny BERT, so the model itself is cheap
//! and the daemon's share shows):
//!
//! 1. in process, through `landfall::classifier`: model time per request at batch 1 (per
//!    reference text), and throughput at the daemon's `max_batch`;
//! 2. through a real mosquitto and the daemon (started through `landfall::daemon::run`, as the
//!    integration tests do): sequential request→answer latency (one request in flight), with the
//!    default batching window and with `max_wait_ms = 0`, and the overhead = end-to-end minus the
//!    in-process model time of the same text; then a burst of requests sent as fast as possible;
//! 3. prints a markdown table with the figures and the machine facts.
//!
//! Every wait is bounded; the whole run takes well under two minutes on two cores.

#[path = "../tests/mqtt_support/mod.rs"]
mod mqtt_support;

use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, Instant};

use landfall::classifier::{BaseCache, Classifier, ClassifierOptions};
use mqtt_support::{fixtures, reference, request_body, Client5, Daemon, Mosquitto};
use serde_json::Value;

/// The daemon's defaults (`scheduler.max_batch`, `scheduler.max_wait_ms`).
const MAX_BATCH: usize = 16;
const DEFAULT_MAX_WAIT_MS: u64 = 5;
/// Sequential requests per daemon configuration.
const SEQUENTIAL: usize = 400;
/// Requests in the burst.
const BURST: usize = 2000;
/// Repetitions of each text for the batch-1 model time.
const MODEL_REPS: usize = 50;
/// How long the in-process batched throughput runs.
const BATCHED_FOR: Duration = Duration::from_secs(3);
/// Bounds on the MQTT waits.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(10);
const BURST_TIMEOUT: Duration = Duration::from_secs(60);
const REPLY_TOPIC: &str = "bench/replies";

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    runtime.block_on(run());
}

async fn run() {
    let started = Instant::now();
    let reference = reference();
    let texts: Vec<String> = reference.iter().map(|(t, _)| t.clone()).collect();

    eprintln!("in-process model time ...");
    let local = InProcess::measure(&texts);

    eprintln!("starting mosquitto and the daemon (max_wait_ms = {DEFAULT_MAX_WAIT_MS}) ...");
    let broker = Mosquitto::start();
    let state = tempfile::tempdir().expect("tempdir");
    let daemon = Daemon::start(&daemon_config(
        broker.port,
        "bench5",
        &state.path().join("q5"),
        DEFAULT_MAX_WAIT_MS,
    ));
    let mut client = Client5::connect(broker.port, "bench-client", false).await;
    client.wait_ready("landfall/bench5").await;
    client.subscribe(REPLY_TOPIC).await;
    eprintln!("sequential requests (max_wait_ms = {DEFAULT_MAX_WAIT_MS}) ...");
    let seq_default = sequential(
        &mut client,
        "landfall/bench5",
        DEFAULT_MAX_WAIT_MS,
        &reference,
        &local,
    )
    .await;
    eprintln!("burst of {BURST} requests ...");
    let burst = burst(&mut client, "landfall/bench5", &reference).await;
    daemon.stop().await;

    eprintln!("sequential requests (max_wait_ms = 0) ...");
    let daemon = Daemon::start(&daemon_config(
        broker.port,
        "bench0",
        &state.path().join("q0"),
        0,
    ));
    client.wait_ready("landfall/bench0").await;
    let seq_zero = sequential(&mut client, "landfall/bench0", 0, &reference, &local).await;
    daemon.stop().await;
    drop(client);
    drop(broker);

    print_report(&local, &seq_default, &seq_zero, &burst, started.elapsed());
}

/// The daemon's defaults except a queue that holds the whole burst (so it measures throughput,
/// not admission) and a health interval that stays out of the way.
fn daemon_config(port: u16, device: &str, queue: &Path, max_wait_ms: u64) -> String {
    let f = fixtures();
    format!(
        r#"
[mqtt]
host = "127.0.0.1"
port = {port}
device_id = "{device}"

[health]
interval = "1h"

[queue]
dir = "{queue}"

[scheduler]
queue_capacity = {BURST}
max_batch = {MAX_BATCH}
max_wait_ms = {max_wait_ms}

[[classifier]]
name = "zh"
base = "{base}"
adapter = "{adapter}"
"#,
        queue = queue.display(),
        base = f.join("bases/zh_prefixed").display(),
        adapter = f.join("cases/zh_qv/adapter").display(),
    )
}

/// The in-process figures.
struct InProcess {
    /// Median batch-1 model time of each reference text, ms.
    per_text_ms: Vec<f64>,
    /// Every batch-1 time, all texts, ms.
    all_ms: Vec<f64>,
    /// Texts per second at `MAX_BATCH`, batches composed as the daemon composes the burst's.
    batched_per_s: f64,
}

impl InProcess {
    fn measure(texts: &[String]) -> Self {
        let f = fixtures();
        // As the daemon loads it on a CPU build: device auto = CPU, f32, no quantization.
        let classifier = Classifier::load(
            &f.join("bases/zh_prefixed"),
            &f.join("cases/zh_qv/adapter"),
            &ClassifierOptions::default(),
            &mut BaseCache::default(),
        )
        .expect("load the zh_qv fixture classifier");
        let mut per_text_ms = Vec::with_capacity(texts.len());
        let mut all_ms = Vec::with_capacity(texts.len() * MODEL_REPS);
        for text in texts {
            classifier.classify(&[text]).expect("classify"); // warm-up
            let mut times: Vec<f64> = (0..MODEL_REPS)
                .map(|_| {
                    let t = Instant::now();
                    classifier.classify(&[text]).expect("classify");
                    ms(t.elapsed())
                })
                .collect();
            all_ms.extend_from_slice(&times);
            per_text_ms.push(percentile(&mut times, 0.5));
        }
        // Requests cycle through the texts; full batches of MAX_BATCH in arrival order.
        let cycle: Vec<&str> = (0..texts.len() * MAX_BATCH)
            .map(|i| texts[i % texts.len()].as_str())
            .collect();
        let batches: Vec<&[&str]> = cycle.chunks(MAX_BATCH).collect();
        classifier.classify(batches[0]).expect("classify"); // warm-up
        let t = Instant::now();
        let mut done = 0usize;
        let mut i = 0;
        while t.elapsed() < BATCHED_FOR {
            let batch = batches[i % batches.len()];
            classifier.classify(batch).expect("classify");
            done += batch.len();
            i += 1;
        }
        Self {
            per_text_ms,
            all_ms,
            batched_per_s: done as f64 / t.elapsed().as_secs_f64(),
        }
    }
}

/// Sequential request→answer figures, ms.
struct Sequential {
    max_wait_ms: u64,
    end_to_end: Vec<f64>,
    /// End-to-end minus the in-process batch-1 model time of the same text.
    overhead: Vec<f64>,
    /// The answer's `latency_ms` (received by the daemon → answer ready) minus the model time.
    in_daemon: Vec<f64>,
    /// End-to-end minus the answer's `latency_ms`: the MQTT hops and both clients' event loops.
    transport: Vec<f64>,
    wrong: usize,
}

/// One request in flight at a time, the reference texts in turn.
async fn sequential(
    client: &mut Client5,
    prefix: &str,
    max_wait_ms: u64,
    reference: &[(String, String)],
    local: &InProcess,
) -> Sequential {
    let topic = format!("{prefix}/classify/request");
    let mut s = Sequential {
        max_wait_ms,
        end_to_end: Vec::with_capacity(SEQUENTIAL),
        overhead: Vec::with_capacity(SEQUENTIAL),
        in_daemon: Vec::with_capacity(SEQUENTIAL),
        transport: Vec::with_capacity(SEQUENTIAL),
        wrong: 0,
    };
    let warmup = 2 * reference.len();
    for i in 0..warmup + SEQUENTIAL {
        let k = i % reference.len();
        let (text, label) = &reference[k];
        let id = format!("s{i}");
        let sent = Instant::now();
        client
            .request(&topic, request_body(&id, text, None), REPLY_TOPIC, b"seq")
            .await;
        let answer = loop {
            let m = tokio::time::timeout(ANSWER_TIMEOUT, client.msgs.recv())
                .await
                .unwrap_or_else(|_| panic!("no answer to {id} within {ANSWER_TIMEOUT:?}"))
                .expect("client alive");
            if m.topic == REPLY_TOPIC && m.json()["id"] == id.as_str() {
                break m.json();
            }
        };
        let e2e = ms(sent.elapsed());
        if i < warmup {
            continue;
        }
        if answer["label"] != label.as_str() {
            s.wrong += 1;
        }
        let model = local.per_text_ms[k];
        let daemon_ms = answer["latency_ms"].as_f64().unwrap_or(f64::NAN);
        s.end_to_end.push(e2e);
        s.overhead.push(e2e - model);
        s.in_daemon.push(daemon_ms - model);
        s.transport.push(e2e - daemon_ms);
    }
    s
}

struct Burst {
    sent: usize,
    answered: usize,
    errors: usize,
    wrong: usize,
    seconds: f64,
}

impl Burst {
    fn per_s(&self) -> f64 {
        self.answered as f64 / self.seconds
    }
}

/// `BURST` requests published as fast as the client takes them; answered requests per second
/// from the first publish to the last answer.
async fn burst(client: &mut Client5, prefix: &str, reference: &[(String, String)]) -> Burst {
    let topic = format!("{prefix}/classify/request");
    let start = Instant::now();
    for i in 0..BURST {
        let text = &reference[i % reference.len()].0;
        client
            .request(
                &topic,
                request_body(&format!("b{i}"), text, None),
                REPLY_TOPIC,
                b"burst",
            )
            .await;
    }
    let deadline = tokio::time::Instant::now() + BURST_TIMEOUT;
    let mut seen: HashMap<usize, Value> = HashMap::with_capacity(BURST);
    let mut last = start;
    while seen.len() < BURST {
        let Ok(Some(m)) = tokio::time::timeout_at(deadline, client.msgs.recv()).await else {
            eprintln!(
                "burst: only {} of {BURST} answered within {BURST_TIMEOUT:?}",
                seen.len()
            );
            break;
        };
        if m.topic != REPLY_TOPIC {
            continue;
        }
        let v = m.json();
        let Some(i) = v["id"]
            .as_str()
            .and_then(|id| id.strip_prefix('b'))
            .and_then(|n| n.parse::<usize>().ok())
        else {
            continue;
        };
        last = Instant::now();
        seen.insert(i, v);
    }
    let errors = seen.values().filter(|v| v.get("error").is_some()).count();
    let wrong = seen
        .iter()
        .filter(|(i, v)| {
            v.get("error").is_none() && v["label"] != reference[*i % reference.len()].1.as_str()
        })
        .count();
    Burst {
        sent: BURST,
        answered: seen.len() - errors,
        errors,
        wrong,
        seconds: last.duration_since(start).as_secs_f64().max(1e-9),
    }
}

fn print_report(
    local: &InProcess,
    seq5: &Sequential,
    seq0: &Sequential,
    burst: &Burst,
    took: Duration,
) {
    let mut model = local.all_ms.clone();
    let (m50, m99) = (percentile(&mut model, 0.5), percentile(&mut model, 0.99));
    let p = |v: &[f64]| {
        let mut v = v.to_vec();
        format!(
            "{:.3} / {:.3}",
            percentile(&mut v, 0.5),
            percentile(&mut v, 0.99)
        )
    };
    let p50 = |v: &[f64]| percentile(&mut v.to_vec(), 0.5);

    println!();
    println!("| measurement | p50 / p99 (ms) or rate |");
    println!("| --- | ---: |");
    println!("| in process: model time per request, batch 1 | {m50:.3} / {m99:.3} |");
    println!(
        "| in process: throughput at max_batch {MAX_BATCH} | {:.0} texts/s |",
        local.batched_per_s
    );
    for s in [seq5, seq0] {
        let w = s.max_wait_ms;
        println!(
            "| MQTT, sequential ({} requests), max_wait_ms {w}: end to end | {} |",
            s.end_to_end.len(),
            p(&s.end_to_end)
        );
        println!(
            "| … daemon overhead = end to end − model time | {} |",
            p(&s.overhead)
        );
        println!(
            "| … of which inside the daemon (answer's `latency_ms` − model time) | {} |",
            p(&s.in_daemon)
        );
        println!(
            "| … of which MQTT hops (end to end − `latency_ms`) | {} |",
            p(&s.transport)
        );
        println!(
            "| … end to end ÷ model time (p50) | {:.0}× |",
            p50(&s.end_to_end) / m50
        );
    }
    println!(
        "| MQTT, burst of {}: answered | {:.0} requests/s ({} answered, {} errors, {:.2} s) |",
        burst.sent,
        burst.per_s(),
        burst.answered,
        burst.errors,
        burst.seconds
    );
    println!(
        "| … burst ÷ in-process batched throughput | {:.3} |",
        burst.per_s() / local.batched_per_s
    );
    println!();
    let wrong = seq5.wrong + seq0.wrong + burst.wrong;
    println!(
        "Machine: {} cores ({}), {}; daemon over MQTT 5 at QoS 1, client and daemon in one \
         process; wrong labels: {wrong}; run took {:.0} s.",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        cpu_model(),
        mosquitto_version(),
        took.as_secs_f64()
    );
    if wrong > 0 || burst.answered < burst.sent {
        eprintln!(
            "warning: {wrong} wrong labels, {} of {} burst requests answered without error",
            burst.answered, burst.sent
        );
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Nearest-rank percentile (`q` in 0..=1); NaN when empty.
fn percentile(values: &mut [f64], q: f64) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    values.sort_by(f64::total_cmp);
    let rank = (q * values.len() as f64).ceil() as usize;
    values[rank.clamp(1, values.len()) - 1]
}

fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_string())
        })
        .unwrap_or_else(|| std::env::consts::ARCH.to_string())
}

fn mosquitto_version() -> String {
    std::process::Command::new("/usr/sbin/mosquitto")
        .arg("-h")
        .output()
        .ok()
        .and_then(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .next()
                .map(str::to_string)
        })
        .unwrap_or_else(|| "mosquitto (version unknown)".to_string())
}
