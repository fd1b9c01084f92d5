//! Limits checked before work, with the tiny BLIP-2 fixture as captioner and `RUST_BACKTRACE=1`
//! set (a backtrace must never reach an answer): a prompt longer than the model's positions, a
//! 1 MiB question and repeated choices are each answered `invalid_field` in one line naming the
//! limit, and 21 megabyte questions leave the daemon's memory where it was.

mod mqtt_support;

use std::path::Path;

use landfall::models::blip2::{Blip2, Blip2LoadOptions};
use mqtt_support::*;
use serde_json::{json, Value};

fn model_dir() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/blip2/modern")
}

/// The daemon's resident memory, from its next health report.
async fn rss(client: &mut Client5) -> u64 {
    let v = client.next_on("landfall/lim/health").await.json();
    v["system"]["rss_bytes"].as_u64().expect("rss in health")
}

fn one_line_invalid_field(v: &Value, what: &str) -> String {
    assert_eq!(v["error"]["code"], "invalid_field", "{what}: {v}");
    let message = v["error"]["message"].as_str().unwrap().to_string();
    assert!(!message.contains('\n'), "{what}: {message:?}");
    assert!(
        !message.to_lowercase().contains("backtrace"),
        "{what}: {message:?}"
    );
    assert!(message.len() < 600, "{what}: {} bytes", message.len());
    message
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_prompts_and_repeated_choices_are_refused_in_one_line() {
    // SAFETY: set before the daemon or any other thread of this test binary reads it.
    unsafe { std::env::set_var("RUST_BACKTRACE", "1") };
    let broker = Mosquitto::start();
    let state = tempfile::tempdir().unwrap();
    let extra = format!(
        "[captioner]\nmodel = \"{}\"\nquant = \"none\"\nmax_new_tokens = 12\n\n\
         [[camera]]\nname = \"bars\"\nsource = \"pattern:bars\"\ninterval = 0\n",
        model_dir().display()
    );
    let daemon = Daemon::start(&config(
        broker.port,
        "lim",
        state.path(),
        "max_payload_bytes = 4194304",
        &extra,
    ));
    let mut client = Client5::connect(broker.port, "lim-tester", false).await;
    client.wait_ready("landfall/lim").await;
    client.subscribe("replies/lim").await;
    client.subscribe("landfall/lim/health").await;
    // Wait for a frame of the pattern camera.
    loop {
        let v = client.next_on("landfall/lim/health").await.json();
        if v["cameras"]["bars"]["captured"].as_u64() >= Some(1) {
            break;
        }
    }

    // A prompt short in bytes but longer than the model's positions in tokens: the engine
    // refuses it once tokenized (generation and choice scoring alike).
    let model = Blip2::load(&model_dir(), &Blip2LoadOptions::default()).unwrap();
    let limit = model.max_prompt_tokens(12);
    let mut prompt = String::new();
    while model.input_ids(&prompt).unwrap().len() <= limit + 8 {
        prompt.push_str("zq xj ");
    }
    assert!(
        prompt.len() < limit * 16,
        "the prompt must pass the length check"
    );
    // Scoring choices needs room for the longest choice only: this one leaves none at all.
    let mut longer = prompt.clone();
    while model.input_ids(&longer).unwrap().len() <= model.max_prompt_tokens(0) + 8 {
        longer.push_str("zq xj ");
    }
    assert!(longer.len() < limit * 16);
    let cases = [
        (
            "long-caption",
            "caption",
            json!({"id": "lc", "prompt": prompt}),
        ),
        (
            "long-choices",
            "vqa",
            json!({"id": "lq", "question": "q", "prompt": longer, "choices": ["yes", "no"]}),
        ),
        (
            "huge-question",
            "vqa",
            json!({"id": "hq", "question": "why ".repeat(1 << 18)}),
        ),
        (
            "same-choices",
            "vqa",
            json!({"id": "sc", "question": "is it on?", "choices": ["a", "a"]}),
        ),
    ];
    for (name, task, body) in &cases {
        client
            .request(
                &format!("landfall/lim/{task}/request"),
                body.to_string(),
                "replies/lim",
                name.as_bytes(),
            )
            .await;
        let m = client.next_on("replies/lim").await;
        assert_eq!(m.correlation.as_deref(), Some(name.as_bytes()));
        let message = one_line_invalid_field(&m.json(), name);
        match *name {
            "long-caption" => {
                assert!(message.contains(&format!("at most {limit}")), "{message}")
            }
            "long-choices" => assert!(message.contains("tokens; with"), "{message}"),
            "huge-question" => assert!(message.contains("tokens"), "{message}"),
            _ => assert!(message.contains("twice"), "{message}"),
        }
    }

    // A megabyte question is refused by its length, before any tokenizing: memory stays put.
    let before = rss(&mut client).await;
    let huge = json!({"id": "m", "question": "why ".repeat(1 << 18)}).to_string();
    for i in 0..21 {
        client
            .request(
                "landfall/lim/vqa/request",
                huge.clone(),
                "replies/lim",
                format!("m{i}").as_bytes(),
            )
            .await;
        one_line_invalid_field(&client.next_on("replies/lim").await.json(), "megabyte");
    }
    // Two reports on, so the figure is taken after the last answer.
    rss(&mut client).await;
    let after = rss(&mut client).await;
    let grown = after.saturating_sub(before);
    println!("RSS before {before} B, after 21 one-MiB questions {after} B (+{grown} B)");
    assert!(grown < 48 << 20, "RSS grew by {grown} bytes");
    daemon.stop().await;
}
