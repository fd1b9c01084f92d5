//! What the daemon costs on top of the model: `cargo bench --bench daemon_overhead`.
//!
//! One run measures, on the zh_qv fixture classifier (a tiny BERT, so the model itself is cheap
//! and the daemon's share shows):
//!
//! 1. in process, through `landfall::classifier`: model time per request at batch 1 (per
//!    reference text), and throughput at the daemon's `max_batch`;
//! 2. through a real mosquitto (`set_tcp_nodelay true`) and the daemon (started through
//!    `landfall::daemon::run`, as the integration tests do): sequential request→answer latency
//!    (one request in flight) and the overhead = end to end minus the in-process model time of
//!    the same text, split by the answer's `latency_ms` into time inside the daemon and MQTT
//!    hops; then a burst of requests sent as fast as possible. Both with the default batching
//!    window and with `max_wait_ms = 0`; then the sequential case again on a mosquitto with its
//!    defaults (`set_tcp_nodelay false`), which shows the broker's Nagle delay;
//! 3. prints a markdown table with the figures and the machine facts.
//!
//! Every wait is bounded; the whole run takes about 20 s on two cores.

#[path = "../tests/mqtt_support/mod.rs"]
mod mqtt_support;

use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, Instant};

use landfall::classifier::{BaseCache, Classifier, ClassifierOptions};
use mqtt_support::{fixtures, reference, request_body, Daemon, Mosquitto, WAIT};
use rumqttc::v5::mqttbytes::v5 as p5;
use rumqttc::v5::mqttbytes::v5::Packet;
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::Event;
use serde_json::Value;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio::time::{timeout, timeout_at};

/// The daemon's defaults (`scheduler.max_batch`, `scheduler.max_wait_ms`).
const MAX_BATCH: usize = 16;
const DEFAULT_MAX_WAIT_MS: u64 = 5;
/// Sequential requests per daemon configuration; fewer on the stock broker, ~45 ms each there.
const SEQUENTIAL: usize = 400;
const SEQUENTIAL_STOCK: usize = 100;
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

    // The main broker sends without Nagle's delay (`set_tcp_nodelay true`), so what remains
    // is the daemon's own; a second run on mosquitto's defaults shows what a stock broker adds.
    eprintln!(
        "mosquitto (set_tcp_nodelay true), the daemon (max_wait_ms = {DEFAULT_MAX_WAIT_MS}) ..."
    );
    let broker = Mosquitto::start_with(|_| "set_tcp_nodelay true\n".to_string());
    let state = tempfile::tempdir().expect("tempdir");
    let mut client = BenchClient::connect(broker.port).await;
    let (seq_default, burst) = {
        let prefix = "landfall/bench5";
        let daemon = Daemon::start(&daemon_config(
            broker.port,
            "bench5",
            &state.path().join("q5"),
            DEFAULT_MAX_WAIT_MS,
        ));
        client.wait_ready(prefix).await;
        let label = format!("max_wait_ms {DEFAULT_MAX_WAIT_MS} (default)");
        let seq = sequential(&mut client, prefix, label, SEQUENTIAL, &reference, &local).await;
        eprintln!("burst of {BURST} requests ...");
        let burst = run_burst(&mut client, prefix, DEFAULT_MAX_WAIT_MS, &reference).await;
        daemon.stop().await;
        (seq, burst)
    };
    eprintln!("the daemon with max_wait_ms = 0 ...");
    let (seq_zero, burst_zero) = {
        let prefix = "landfall/bench0";
        let daemon = Daemon::start(&daemon_config(
            broker.port,
            "bench0",
            &state.path().join("q0"),
            0,
        ));
        client.wait_ready(prefix).await;
        let label = "max_wait_ms 0".to_string();
        let seq = sequential(&mut client, prefix, label, SEQUENTIAL, &reference, &local).await;
        eprintln!("burst of {BURST} requests ...");
        let burst = run_burst(&mut client, prefix, 0, &reference).await;
        daemon.stop().await;
        (seq, burst)
    };
    drop(client);
    drop(broker);

    eprintln!("mosquitto with its defaults (set_tcp_nodelay false) ...");
    let seq_stock = {
        let broker = Mosquitto::start();
        let mut client = BenchClient::connect(broker.port).await;
        let prefix = "landfall/benchstock";
        let daemon = Daemon::start(&daemon_config(
            broker.port,
            "benchstock",
            &state.path().join("qs"),
            DEFAULT_MAX_WAIT_MS,
        ));
        client.wait_ready(prefix).await;
        let label = format!(
            "max_wait_ms {DEFAULT_MAX_WAIT_MS}, mosquitto's default `set_tcp_nodelay false`"
        );
        let seq = sequential(
            &mut client,
            prefix,
            label,
            SEQUENTIAL_STOCK,
            &reference,
            &local,
        )
        .await;
        daemon.stop().await;
        seq
    };

    print_report(
        &local,
        &[&seq_default, &seq_zero, &seq_stock],
        &[&burst, &burst_zero],
        started.elapsed(),
    );
}

/// An answer as the load client's event loop saw it arrive.
struct Answer {
    at: Instant,
    topic: String,
    body: Value,
}

/// The load generator: an MQTT 5 client that asks for its answers on [`REPLY_TOPIC`]. It sets
/// TCP_NODELAY, so Nagle's algorithm on its own socket (a PUBACK for the previous answer still
/// unacknowledged holds the next request back until the broker's delayed ACK, about 40 ms)
/// does not count against the daemon.
struct BenchClient {
    client: rumqttc::v5::AsyncClient,
    answers: mpsc::UnboundedReceiver<Answer>,
    task: JoinHandle<()>,
}

impl BenchClient {
    async fn connect(port: u16) -> Self {
        let mut o = rumqttc::v5::MqttOptions::new("bench-client", "127.0.0.1", port);
        let mut net = rumqttc::NetworkOptions::new();
        net.set_tcp_nodelay(true);
        o.set_keep_alive(Duration::from_secs(30))
            .set_clean_start(true)
            .set_network_options(net);
        let (client, mut eventloop) = rumqttc::v5::AsyncClient::new(o, BURST + 100);
        let (tx, answers) = mpsc::unbounded_channel();
        let (ready_tx, ready_rx) = oneshot::channel();
        let task = tokio::spawn(async move {
            let mut ready_tx = Some(ready_tx);
            loop {
                match eventloop.poll().await {
                    Ok(Event::Incoming(Packet::SubAck(_))) => {
                        if let Some(tx) = ready_tx.take() {
                            let _ = tx.send(());
                        }
                    }
                    Ok(Event::Incoming(Packet::Publish(p))) => {
                        let at = Instant::now();
                        let body = serde_json::from_slice(&p.payload).unwrap_or(Value::Null);
                        let topic = String::from_utf8_lossy(&p.topic).into_owned();
                        let _ = tx.send(Answer { at, topic, body });
                    }
                    Ok(_) => {}
                    Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
                }
            }
        });
        client
            .subscribe(REPLY_TOPIC, QoS::AtLeastOnce)
            .await
            .expect("subscribe");
        timeout(WAIT, ready_rx)
            .await
            .expect("the bench client connects and subscribes in time")
            .expect("suback");
        Self {
            client,
            answers,
            task,
        }
    }

    async fn request(&self, topic: &str, id: &str, text: &str) {
        let props = p5::PublishProperties {
            response_topic: Some(REPLY_TOPIC.to_string()),
            ..Default::default()
        };
        self.client
            .publish_with_properties(
                topic,
                QoS::AtLeastOnce,
                false,
                request_body(id, text, None),
                props,
            )
            .await
            .expect("publish");
    }

    /// The next answer on [`REPLY_TOPIC`] before `deadline`.
    async fn next_until(&mut self, deadline: tokio::time::Instant) -> Option<Answer> {
        loop {
            let a = timeout_at(deadline, self.answers.recv()).await.ok()??;
            if a.topic == REPLY_TOPIC {
                return Some(a);
            }
        }
    }

    /// Asks the daemon at `prefix` until it answers: its subscriptions are then in place.
    async fn wait_ready(&mut self, prefix: &str) {
        let topic = format!("{prefix}/classify/request");
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            self.request(&topic, "ready", "ping").await;
            let until = tokio::time::Instant::now() + Duration::from_millis(500);
            while let Some(a) = self.next_until(until).await {
                if a.body["id"] == "ready" {
                    return;
                }
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{prefix} never answered"
            );
        }
    }
}

impl Drop for BenchClient {
    fn drop(&mut self) {
        self.task.abort();
    }
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
    setup: String,
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
    client: &mut BenchClient,
    prefix: &str,
    setup: String,
    n: usize,
    reference: &[(String, String)],
    local: &InProcess,
) -> Sequential {
    let topic = format!("{prefix}/classify/request");
    let mut s = Sequential {
        setup,
        end_to_end: Vec::with_capacity(n),
        overhead: Vec::with_capacity(n),
        in_daemon: Vec::with_capacity(n),
        transport: Vec::with_capacity(n),
        wrong: 0,
    };
    let warmup = 2 * reference.len();
    for i in 0..warmup + n {
        let k = i % reference.len();
        let (text, label) = &reference[k];
        let id = format!("s{i}");
        let sent = Instant::now();
        client.request(&topic, &id, text).await;
        let deadline = tokio::time::Instant::now() + ANSWER_TIMEOUT;
        let (answer, at) = loop {
            let a = client
                .next_until(deadline)
                .await
                .unwrap_or_else(|| panic!("no answer to {id} within {ANSWER_TIMEOUT:?}"));
            if a.body["id"] == id.as_str() {
                break (a.body, a.at);
            }
        };
        let e2e = ms(at.duration_since(sent));
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
    max_wait_ms: u64,
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
async fn run_burst(
    client: &mut BenchClient,
    prefix: &str,
    max_wait_ms: u64,
    reference: &[(String, String)],
) -> Burst {
    let topic = format!("{prefix}/classify/request");
    let start = Instant::now();
    for i in 0..BURST {
        let text = &reference[i % reference.len()].0;
        client.request(&topic, &format!("b{i}"), text).await;
    }
    let deadline = tokio::time::Instant::now() + BURST_TIMEOUT;
    let mut seen: HashMap<usize, Value> = HashMap::with_capacity(BURST);
    let mut last = start;
    while seen.len() < BURST {
        let Some(a) = client.next_until(deadline).await else {
            eprintln!(
                "burst: only {} of {BURST} answered within {BURST_TIMEOUT:?}",
                seen.len()
            );
            break;
        };
        let v = a.body;
        let Some(i) = v["id"]
            .as_str()
            .and_then(|id| id.strip_prefix('b'))
            .and_then(|n| n.parse::<usize>().ok())
        else {
            continue;
        };
        last = last.max(a.at);
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
        max_wait_ms,
        sent: BURST,
        answered: seen.len() - errors,
        errors,
        wrong,
        seconds: last.duration_since(start).as_secs_f64().max(1e-9),
    }
}

fn print_report(local: &InProcess, sequential: &[&Sequential], bursts: &[&Burst], took: Duration) {
    let mut model = local.all_ms.clone();
    let (m50, m99) = (percentile(&mut model, 0.5), percentile(&mut model, 0.99));
    let p50 = |v: &[f64]| percentile(&mut v.to_vec(), 0.5);
    let p99 = |v: &[f64]| percentile(&mut v.to_vec(), 0.99);
    let row = |what: &str, value: String| println!("| {what} | {value} |");
    let pp = |v: &[f64]| format!("{:.2} / {:.2} ms", p50(v), p99(v));

    println!();
    println!("| measurement | p50 / p99, or rate |");
    println!("| --- | ---: |");
    row(
        "in process, batch 1: model time per request",
        format!("{m50:.2} / {m99:.2} ms"),
    );
    row(
        &format!("in process, batch {MAX_BATCH} (`max_batch`): throughput"),
        format!("{:.0} texts/s", local.batched_per_s),
    );
    for s in sequential {
        let n = s.end_to_end.len();
        row(
            &format!("MQTT, {n} sequential requests, {}: end to end", s.setup),
            pp(&s.end_to_end),
        );
        row("… overhead = end to end − model time", pp(&s.overhead));
        row(
            "… of it inside the daemon (answer's `latency_ms` − model time)",
            pp(&s.in_daemon),
        );
        row(
            "… of it MQTT hops (end to end − `latency_ms`)",
            pp(&s.transport),
        );
        row(
            "… end to end ÷ model time, p50",
            format!("{:.1}×", p50(&s.end_to_end) / m50),
        );
    }
    for b in bursts {
        row(
            &format!(
                "MQTT, burst of {} requests at once, max_wait_ms {}: answered ({} errors, {:.2} s)",
                b.sent, b.max_wait_ms, b.errors, b.seconds
            ),
            format!("{:.0} requests/s", b.per_s()),
        );
        row(
            "… burst ÷ in-process batched throughput",
            format!("{:.2}", b.per_s() / local.batched_per_s),
        );
    }
    println!();
    let wrong = sequential.iter().map(|s| s.wrong).sum::<usize>()
        + bursts.iter().map(|b| b.wrong).sum::<usize>();
    println!(
        "{} cores ({}), {}; MQTT 5, QoS 1; load client (TCP_NODELAY), daemon and model in one \
         process; wrong labels: {wrong}; the run took {:.0} s.",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        cpu_model(),
        mosquitto_version(),
        took.as_secs_f64()
    );
    for b in bursts {
        if b.answered < b.sent {
            eprintln!(
                "warning: {} of {} burst requests answered without error",
                b.answered, b.sent
            );
        }
    }
    if wrong > 0 {
        eprintln!("warning: {wrong} wrong labels");
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
