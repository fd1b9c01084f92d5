use std::time::Duration;

use std::path::PathBuf;

use super::*;
use crate::models::runtime::{FloatType, Quant};

fn parse(text: &str) -> Result<Config, ConfigError> {
    Config::from_toml_str(text, "test.toml")
}

fn error_line(text: &str) -> String {
    parse(text)
        .expect_err("config should be rejected")
        .to_string()
}

#[test]
fn empty_file_gives_the_documented_defaults() {
    let c = parse("").unwrap();
    assert_eq!(c.mqtt.host, "127.0.0.1");
    assert_eq!(c.mqtt.port.get(), 1883);
    assert_eq!(
        c.mqtt.embedded_listen,
        Some("127.0.0.1:1883".parse().unwrap())
    );
    assert_eq!(c.mqtt.topic_prefix, "landfall");
    assert_eq!(c.mqtt.device_id, hostname());
    assert_eq!(c.mqtt.client_id, format!("landfall-{}", hostname()));
    assert_eq!(c.mqtt.protocol, Protocol::V5);
    assert_eq!(c.mqtt.keep_alive, Duration::from_secs(30));
    assert_eq!(c.mqtt.max_payload_bytes.get(), 1 << 20);
    assert_eq!(c.health.interval, Duration::from_secs(30));
    assert_eq!(c.scheduler.max_batch.get(), 16);
    assert_eq!(c.scheduler.max_wait, Duration::from_millis(5));
    assert_eq!(c.models.dir, PathBuf::from("./models"));
    assert!(c.classifiers.is_empty());
}

const FULL: &str = r#"
[mqtt]
host = "broker.lan"
port = 1884
device_id = "cam-7"
topic_prefix = "site/a"
protocol = "v311"
keep_alive = "45s"
session_expiry = "2h"
fleet_group = "sentiment"
max_payload_bytes = 65536
username = "dev"
password = "secret"

[health]
interval = 10

[queue]
dir = "/tmp/q"
max_entries = 50

[scheduler]
queue_capacity = 8
max_batch = 4
max_wait_ms = 20

[models]
dir = "/opt/models"

[[classifier]]
name = "sentiment"
base = "bert"
adapter = "/abs/adapter"
labels = ["neg", "neu", "pos"]
quant = "q8_0"
device = "cpu"
dtype = "f16"
"#;

#[test]
fn full_config_is_read_and_resolved() {
    let c = parse(FULL).unwrap();
    assert_eq!(c.mqtt.host, "broker.lan");
    assert_eq!(c.mqtt.embedded_listen, None);
    assert_eq!(c.mqtt.device_prefix(), "site/a/cam-7");
    assert_eq!(c.mqtt.protocol, Protocol::V311);
    assert_eq!(c.mqtt.keep_alive, Duration::from_secs(45));
    assert_eq!(c.mqtt.session_expiry, Duration::from_secs(7200));
    assert_eq!(c.mqtt.fleet_group.as_deref(), Some("sentiment"));
    assert_eq!(c.health.interval, Duration::from_secs(10));
    assert_eq!(c.queue.max_entries.get(), 50);
    assert_eq!(c.scheduler.max_wait, Duration::from_millis(20));
    let k = &c.classifiers[0];
    assert_eq!(k.base, PathBuf::from("/opt/models/bert"));
    assert_eq!(k.adapter, Some(PathBuf::from("/abs/adapter")));
    assert_eq!(k.quant, Quant::Q8_0);
    assert_eq!(k.dtype, Some(FloatType::F16));
}

#[test]
fn effective_config_reads_back_to_itself_with_the_password_masked() {
    let first = parse(FULL).unwrap().to_toml();
    assert!(first.contains("password = \"********\""), "{first}");
    assert!(!first.contains("secret"));
    let second = parse(&first).unwrap().to_toml();
    assert_eq!(first, second);
    let defaults = parse("").unwrap().to_toml();
    assert_eq!(parse(&defaults).unwrap().to_toml(), defaults);
}

#[test]
fn unknown_key_names_file_line_column_and_field() {
    let e = error_line("[mqtt]\nhost = \"x\"\nhots = \"y\"\n");
    assert!(
        e.starts_with("test.toml:3:1: mqtt.hots: unknown field `hots`"),
        "{e}"
    );
    assert_eq!(e.lines().count(), 1);
}

#[test]
fn wrong_type_points_at_the_value() {
    let e = error_line("[scheduler]\nmax_batch = \"four\"\n");
    assert!(
        e.starts_with("test.toml:2:13: scheduler.max_batch: "),
        "{e}"
    );
}

#[test]
fn syntax_error_is_positioned() {
    let e = error_line("[mqtt\nport = 1\n");
    assert!(e.starts_with("test.toml:1:"), "{e}");
}

#[test]
fn bad_values_name_their_field() {
    let cases = [
        (
            "[mqtt]\nport = 70000\n",
            "test.toml:2:8: mqtt.port: must be between 1 and 65535",
        ),
        (
            "[mqtt]\nkeep_alive = \"30 parsecs\"\n",
            "test.toml:2:14: mqtt.keep_alive: unknown unit",
        ),
        (
            "[mqtt]\nprotocol = \"v4.0\"\n",
            "test.toml:2:12: mqtt.protocol: \"v4.0\": expected \"v5\" or \"v311\"",
        ),
        (
            "[mqtt]\nfleet_group = \"a/b\"\n",
            "test.toml:2:15: mqtt.fleet_group: \"a/b\" is not usable in a topic",
        ),
        (
            "[mqtt]\nembedded_broker = false\n",
            "test.toml:2:19: mqtt.host: required when embedded_broker = false",
        ),
        (
            "[mqtt]\nembedded_broker = \"maybe\"\n",
            "test.toml:2:19: mqtt.embedded_broker: \"maybe\"",
        ),
        (
            "[mqtt]\npassword = \"p\"\n",
            "test.toml:2:12: mqtt.password: needs mqtt.username",
        ),
        (
            "[mqtt]\nhost = \"h\"\n[mqtt.tls]\nca_file = \"/nonexistent/ca.pem\"\n",
            "test.toml:4:11: mqtt.tls.ca_file: /nonexistent/ca.pem: no such file",
        ),
        (
            "[scheduler]\nmax_batch = 0\n",
            "test.toml:2:13: scheduler.max_batch: must be between 1 and 1024",
        ),
        (
            "[health]\ninterval = \"0s\"\n",
            "test.toml:2:12: health.interval: must be above 0",
        ),
    ];
    for (text, want) in cases {
        let e = error_line(text);
        assert!(e.starts_with(want), "{text:?}\n got: {e}\nwant: {want}");
    }
}

#[test]
fn classifier_entries_are_checked() {
    let two = "[[classifier]]\nname = \"a\"\nbase = \"b\"\nadapter = \"c\"\n\n[[classifier]]\nname = \"a\"\nbase = \"b\"\nadapter = \"c\"\n";
    let e = error_line(two);
    assert!(
        e.starts_with("test.toml:7:8: classifier[1].name: \"a\" is already"),
        "{e}"
    );
    let e = error_line("[[classifier]]\nname = \"a\"\nadapter = \"c\"\n");
    assert!(e.contains("classifier[0].base: required"), "{e}");
    let e = error_line(
        "[[classifier]]\nname = \"a\"\nbase = \"b\"\nadapter = \"c\"\ndevice = \"gpu\"\n",
    );
    assert!(
        e.starts_with("test.toml:5:10: classifier[0].device: unknown device"),
        "{e}"
    );
    let e =
        error_line("[[classifier]]\nname = \"a\"\nbase = \"b\"\nadapter = \"c\"\nlabels = []\n");
    assert!(
        e.contains("classifier[0].labels: must be a non-empty list"),
        "{e}"
    );
}

#[test]
fn embedded_broker_can_listen_on_every_interface() {
    let c = parse("[mqtt]\nembedded_broker = true\nhost = \"0.0.0.0\"\nport = 2000\n").unwrap();
    assert_eq!(
        c.mqtt.embedded_listen,
        Some("0.0.0.0:2000".parse().unwrap())
    );
    assert_eq!(c.mqtt.host, "127.0.0.1");
    let e = error_line("[mqtt]\nembedded_broker = true\nhost = \"broker.lan\"\n");
    assert!(
        e.contains("mqtt.host: \"broker.lan\": with embedded_broker = true"),
        "{e}"
    );
}

#[test]
fn durations_take_units_or_seconds() {
    use super::duration::{format_duration, parse_duration};
    assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
    assert_eq!(parse_duration("90"), Ok(Duration::from_secs(90)));
    assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
    assert!(parse_duration("-1s").is_err());
    assert_eq!(format_duration(Duration::from_secs(7200)), "2h");
    assert_eq!(format_duration(Duration::from_millis(1500)), "1500ms");
    assert_eq!(format_duration(Duration::from_secs(90)), "90s");
}

const CAMERAS: &str = r#"
[captioner]
model = "blip2"
max_new_tokens = 20
prompt = "a photo of"

[templates]
yesno = "Question: {question} Answer yes or no. Answer:"

[[camera]]
name = "door"
source = "v4l2:/dev/video0"
fps = 15
resolution = "1280x720"
pixel_format = "mjpeg"
interval = "30s"
caption_on_change = true
scene_threshold = 0.2
prompt = "the front door:"

[[camera]]
name = "frames"
source = "dir:/srv/frames"
fps = 0.5
interval = 0

[homeassistant]
enabled = true
"#;

#[test]
fn cameras_captioner_templates_and_homeassistant_are_read() {
    let c = parse(CAMERAS).unwrap();
    assert!(
        c.captioner.model.ends_with("models/blip2"),
        "{:?}",
        c.captioner.model
    );
    assert_eq!(c.captioner.max_new_tokens, 20);
    assert_eq!(c.templates["vqa"], "Question: {question} Answer:");
    assert!(c.templates["yesno"].contains("yes or no"));
    let door = &c.cameras[0];
    assert_eq!(door.source.to_string(), "v4l2:/dev/video0");
    assert_eq!(door.fps, 15.0);
    assert_eq!(door.resolution.unwrap().to_string(), "1280x720");
    assert_eq!(door.interval, Some(Duration::from_secs(30)));
    assert!(door.caption_on_change);
    assert_eq!(c.cameras[1].fps, 0.5);
    assert_eq!(c.cameras[1].interval, None);
    assert!(c.homeassistant.enabled);
    assert_eq!(c.homeassistant.discovery_prefix, "homeassistant");
    let first = c.to_toml();
    assert_eq!(parse(&first).unwrap().to_toml(), first);
}

#[test]
fn defaults_have_one_pattern_camera_and_the_blip2_dir() {
    let builtin = parse(BUILTIN).unwrap();
    assert_eq!(builtin.cameras.len(), 1);
    assert_eq!(builtin.cameras[0].source.to_string(), "pattern:bars");
    assert!(builtin.captioner.model.ends_with("models/blip2-opt-2.7b"));
    assert!(!builtin.homeassistant.enabled);
    // The default model set's classifier, without an adapter.
    assert_eq!(builtin.classifiers.len(), 1);
    assert_eq!(builtin.classifiers[0].name, "sentiment-zh");
    assert!(builtin.classifiers[0]
        .base
        .ends_with("models/roberta-base-finetuned-jd-binary-chinese"));
    assert_eq!(builtin.classifiers[0].adapter, None);
    // A file without cameras has none.
    assert!(parse("").unwrap().cameras.is_empty());
}

#[test]
fn camera_entries_are_checked() {
    let cam = |extra: &str| format!("[[camera]]\nname = \"a\"\nsource = \"pattern:bars\"\n{extra}");
    let cases = [
        (
            "[[camera]]\nname = \"a\"\nsource = \"usb:1\"\n".to_string(),
            "test.toml:3:10: camera[0].source: \"usb:1\": unknown source kind",
        ),
        (
            "[[camera]]\nsource = \"pattern:bars\"\n".to_string(),
            "camera[0].name: required",
        ),
        (
            "[[camera]]\nname = \"a/b\"\nsource = \"pattern:bars\"\n".to_string(),
            "camera[0].name: \"a/b\" is not usable in a topic",
        ),
        (
            cam("fps = 0\n"),
            "test.toml:4:7: camera[0].fps: must be above 0",
        ),
        (
            cam("resolution = \"big\"\n"),
            "camera[0].resolution: \"big\": expected WIDTHxHEIGHT",
        ),
        (cam("pixel_format = \"h264\"\n"), "camera[0].pixel_format:"),
        (
            cam("scene_threshold = 2.0\n"),
            "camera[0].scene_threshold: must be between 0 and 1",
        ),
        (cam("interval = \"soon\"\n"), "camera[0].interval:"),
        (
            format!("{}\n{}", cam(""), cam("")),
            "camera[1].name: \"a\" is already the name of another camera",
        ),
        (
            "[templates]\nx = \"Q: {qestion}\"\n".to_string(),
            "test.toml:2:5: templates.x: unknown placeholder {qestion}",
        ),
        (
            "[captioner]\nmax_new_tokens = 0\n".to_string(),
            "captioner.max_new_tokens: must be between 1 and 512",
        ),
        (
            "[captioner]\nquant = \"q3\"\n".to_string(),
            "captioner.quant:",
        ),
        (
            "[homeassistant]\ndiscovery_prefix = \"ha/#\"\n".to_string(),
            "homeassistant.discovery_prefix:",
        ),
        (
            "[[camera]]\nname = \"a\"\nsource = \"pattern:bars\"\nzoom = 2\n".to_string(),
            "test.toml:4:1: camera.zoom: unknown field `zoom`",
        ),
    ];
    for (text, want) in cases {
        let e = error_line(&text);
        assert!(e.contains(want), "{text:?}\n  gave {e}\n  want {want}");
        assert_eq!(e.lines().count(), 1);
    }
}
