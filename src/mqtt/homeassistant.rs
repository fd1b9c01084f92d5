//! Home Assistant MQTT discovery: retained `<discovery_prefix>/sensor/<node>/<object>/config`
//! messages that make each camera's caption and the main health figures appear as sensors of one
//! device, available while `P/status` says `online`. Home Assistant caps a state at 255
//! characters, so a caption's state is cut there and the full payload (caption, seq, ts, latency,
//! model) arrives as attributes through `json_attributes_topic`.
//!
//! The messages are re-sent whenever Home Assistant announces itself (`online` on
//! `<discovery_prefix>/status`), as its documentation asks of discoverable devices.

use serde_json::{json, Map, Value};

use super::spool::OutMessage;
use super::topics::Topics;
use crate::wire::{OFFLINE, ONLINE};

/// A health figure as a sensor: (object id, name, value template, unit, device class, state class).
type Figure = (
    &'static str,
    &'static str,
    &'static str,
    Option<&'static str>,
    Option<&'static str>,
    &'static str,
);

const FIGURES: &[Figure] = &[
    (
        "cpu",
        "CPU",
        "{{ value_json.system.cpu_percent }}",
        Some("%"),
        None,
        "measurement",
    ),
    (
        "memory",
        "Memory",
        "{{ (value_json.system.rss_bytes / 1048576) | round(1) }}",
        Some("MiB"),
        Some("data_size"),
        "measurement",
    ),
    (
        "queue_depth",
        "Queue depth",
        "{{ value_json.queues.interactive + value_json.queues.periodic }}",
        None,
        None,
        "measurement",
    ),
    (
        "requests",
        "Requests",
        "{{ value_json.counters.requests }}",
        None,
        None,
        "total_increasing",
    ),
    (
        "errors",
        "Errors",
        "{{ value_json.counters.errors }}",
        None,
        None,
        "total_increasing",
    ),
    (
        "frames_dropped",
        "Frames dropped",
        "{{ value_json.counters.frames_dropped }}",
        None,
        None,
        "total_increasing",
    ),
    (
        "uptime",
        "Uptime",
        "{{ value_json.uptime_s }}",
        Some("s"),
        Some("duration"),
        "total_increasing",
    ),
];

/// The temperature sensor, only for machines that report one (else its template would fail).
const TEMPERATURE: Figure = (
    "temperature",
    "Temperature",
    "{{ value_json.system.temperatures_c.values() | max }}",
    Some("°C"),
    Some("temperature"),
    "measurement",
);

/// A topic level Home Assistant accepts as node or object id: `[a-zA-Z0-9_-]`.
fn id_part(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// Every discovery message for this device, retained.
pub fn discovery(
    discovery_prefix: &str,
    topics: &Topics,
    device_id: &str,
    cameras: &[String],
    has_temperature: bool,
) -> Vec<OutMessage> {
    let node = id_part(&format!("landfall_{device_id}"));
    let device = json!({
        "identifiers": [node.clone()],
        "name": format!("landfall {device_id}"),
        "manufacturer": "landfall",
        "model": "landfall",
        "sw_version": env!("CARGO_PKG_VERSION"),
    });
    let base = |object: &str, name: &str, state_topic: &str| -> Map<String, Value> {
        let mut m = Map::new();
        m.insert("name".into(), name.into());
        m.insert("unique_id".into(), format!("{node}_{object}").into());
        m.insert("state_topic".into(), state_topic.into());
        m.insert("availability_topic".into(), topics.status.clone().into());
        m.insert("payload_available".into(), ONLINE.into());
        m.insert("payload_not_available".into(), OFFLINE.into());
        m.insert("device".into(), device.clone());
        m
    };
    let message = |object: &str, config: Map<String, Value>| OutMessage {
        topic: format!("{discovery_prefix}/sensor/{node}/{object}/config"),
        payload: Value::Object(config).to_string(),
        retain: true,
        correlation_data: None,
        durable: false,
    };
    let mut out = Vec::new();
    for cam in cameras {
        let object = id_part(&format!("camera_{cam}_caption"));
        let topic = topics.camera_caption(cam);
        let mut c = base(&object, &format!("{cam} caption"), &topic);
        // A state is at most 255 characters; the whole payload becomes attributes.
        c.insert(
            "value_template".into(),
            "{{ value_json.caption[:255] }}".into(),
        );
        c.insert("json_attributes_topic".into(), topic.into());
        c.insert("icon".into(), "mdi:cctv".into());
        out.push(message(&object, c));
    }
    let figures = FIGURES
        .iter()
        .chain(has_temperature.then_some(&TEMPERATURE));
    for (object, name, template, unit, class, state_class) in figures {
        let mut c = base(object, name, &topics.health);
        c.insert("value_template".into(), (*template).into());
        c.insert("state_class".into(), (*state_class).into());
        c.insert("entity_category".into(), "diagnostic".into());
        if let Some(u) = unit {
            c.insert("unit_of_measurement".into(), (*u).into());
        }
        if let Some(d) = class {
            c.insert("device_class".into(), (*d).into());
        }
        out.push(message(object, c));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_sensor_per_camera_and_figure_all_on_one_device() {
        let topics = Topics::new("landfall", "dev.1", None);
        let msgs = discovery(
            "homeassistant",
            &topics,
            "dev.1",
            &["door".into(), "yard".into()],
            false,
        );
        assert_eq!(msgs.len(), 2 + FIGURES.len());
        let door = &msgs[0];
        assert_eq!(
            door.topic,
            "homeassistant/sensor/landfall_dev_1/camera_door_caption/config"
        );
        assert!(door.retain);
        let v: Value = serde_json::from_str(&door.payload).unwrap();
        assert_eq!(v["state_topic"], "landfall/dev.1/camera/door/caption");
        assert_eq!(v["json_attributes_topic"], v["state_topic"]);
        assert_eq!(v["availability_topic"], "landfall/dev.1/status");
        assert_eq!(v["device"]["identifiers"][0], "landfall_dev_1");
        let ids: std::collections::BTreeSet<String> = msgs
            .iter()
            .map(|m| {
                serde_json::from_str::<Value>(&m.payload).unwrap()["unique_id"]
                    .as_str()
                    .unwrap()
                    .to_string()
            })
            .collect();
        assert_eq!(ids.len(), msgs.len(), "unique ids are unique");
        let with_temp = discovery("ha", &topics, "dev.1", &[], true);
        assert!(with_temp
            .iter()
            .any(|m| m.topic == "ha/sensor/landfall_dev_1/temperature/config"));
    }
}
