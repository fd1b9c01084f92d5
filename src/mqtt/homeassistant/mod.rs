//! Home Assistant MQTT discovery, device-based (Home Assistant 2024.11 and later): one retained
//! `<discovery_prefix>/device/landfall_<device_id>/config` message that names the device (`dev`),
//! the software that sent it (`o`) and every entity of it (`cmps`):
//!
//! - per camera, its last caption (a sensor), periodic captions on/off (a switch) and the caption
//!   interval (a number), backed by `P/camera/<cam>/captions[/set]` and
//!   `P/camera/<cam>/interval[/set]`;
//! - per classifier, the label of its last result on `P/classify/result`;
//! - diagnostic sensors read from `P/health` ([`figures`]).
//!
//! All are available while `P/status` says `online`. Home Assistant caps a state at 255
//! characters, so a caption's state is cut there and the full payload (caption, seq, ts, latency,
//! model) arrives as attributes through `json_attributes_topic`.
//!
//! Earlier versions sent one message per entity under `<discovery_prefix>/sensor/…`; [`legacy`]
//! moves those entities to the device message without losing their history.
//!
//! The device message is re-sent whenever Home Assistant announces itself (`online` on
//! `<discovery_prefix>/status`), as its documentation asks of discoverable devices. This module
//! builds messages only; the daemon core decides when they go out.

mod figures;
mod ids;
mod legacy;

use serde_json::{json, Map, Value};

use super::spool::OutMessage;
use super::topics::{CameraSetting, Topics, INTERVAL_BOUNDS_S};
use crate::wire::{OFFLINE, ONLINE};

use ids::{id_part, node_id};
pub use legacy::legacy_removal;

/// What the device has that Home Assistant should show.
#[derive(Debug, Clone, Copy)]
pub struct DeviceInventory<'a> {
    pub device_id: &'a str,
    pub cameras: &'a [String],
    pub classifiers: &'a [String],
    /// Whether the machine reports a temperature (else that sensor's template would fail).
    pub has_temperature: bool,
}

/// A camera setting as a config entity: its retained state and its `.../set` command topic.
fn setting_component(topics: &Topics, cam: &str, setting: CameraSetting) -> Map<String, Value> {
    let state = topics.camera_setting(cam, setting);
    let mut c = Map::new();
    c.insert("command_topic".into(), format!("{state}/set").into());
    c.insert("state_topic".into(), state.into());
    c.insert("entity_category".into(), "config".into());
    c
}

/// The one retained device discovery message.
pub fn device_discovery(
    discovery_prefix: &str,
    topics: &Topics,
    inv: DeviceInventory,
) -> OutMessage {
    let node = node_id(inv.device_id);
    let mut cmps = Map::new();
    let mut add = |object: String, platform: &str, name: String, mut c: Map<String, Value>| {
        c.insert("p".into(), platform.into());
        c.insert("name".into(), name.into());
        c.insert("unique_id".into(), format!("{node}_{object}").into());
        cmps.insert(object, Value::Object(c));
    };
    for cam in inv.cameras {
        let caption = topics.camera_caption(cam);
        let mut c = Map::new();
        c.insert("state_topic".into(), caption.clone().into());
        // A state is at most 255 characters; the whole payload becomes attributes.
        c.insert(
            "value_template".into(),
            "{{ value_json.caption[:255] }}".into(),
        );
        c.insert("json_attributes_topic".into(), caption.into());
        c.insert("icon".into(), "mdi:cctv".into());
        add(
            id_part(&format!("camera_{cam}_caption")),
            "sensor",
            format!("{cam} caption"),
            c,
        );

        let mut c = setting_component(topics, cam, CameraSetting::Captions);
        c.insert("payload_on".into(), "ON".into());
        c.insert("payload_off".into(), "OFF".into());
        c.insert("state_on".into(), "ON".into());
        c.insert("state_off".into(), "OFF".into());
        c.insert("icon".into(), "mdi:text-box-outline".into());
        add(
            id_part(&format!("camera_{cam}_captions")),
            "switch",
            format!("{cam} periodic captions"),
            c,
        );

        let mut c = setting_component(topics, cam, CameraSetting::Interval);
        c.insert("min".into(), INTERVAL_BOUNDS_S.0.into());
        c.insert("max".into(), INTERVAL_BOUNDS_S.1.into());
        c.insert("step".into(), 1.into());
        c.insert("mode".into(), "box".into());
        c.insert("unit_of_measurement".into(), "s".into());
        c.insert("device_class".into(), "duration".into());
        add(
            id_part(&format!("camera_{cam}_interval")),
            "number",
            format!("{cam} caption interval"),
            c,
        );
    }
    for name in inv.classifiers {
        // Every classifier answers on the same topic: the template keeps the last state when a
        // result is another classifier's or an error. A JSON string is a valid Jinja literal.
        let quoted = Value::from(name.as_str()).to_string();
        let template = format!(
            "{{% if value_json.classifier is defined and value_json.classifier == {quoted} \
             and value_json.label is defined %}}{{{{ value_json.label }}}}\
             {{% else %}}{{{{ this.state }}}}{{% endif %}}"
        );
        let mut c = Map::new();
        c.insert("state_topic".into(), topics.classify_result.clone().into());
        c.insert("value_template".into(), template.into());
        c.insert("icon".into(), "mdi:label-outline".into());
        add(
            id_part(&format!("classifier_{name}_result")),
            "sensor",
            format!("{name} last result"),
            c,
        );
    }
    let temperature = inv.has_temperature.then_some(&figures::TEMPERATURE);
    for f in figures::FIGURES.iter().chain(temperature) {
        let mut c = Map::new();
        c.insert("state_topic".into(), topics.health.clone().into());
        c.insert("value_template".into(), f.template.into());
        c.insert("state_class".into(), f.state_class.into());
        c.insert("entity_category".into(), "diagnostic".into());
        if let Some(u) = f.unit {
            c.insert("unit_of_measurement".into(), u.into());
        }
        if let Some(d) = f.device_class {
            c.insert("device_class".into(), d.into());
        }
        add(f.object.to_string(), "sensor", f.name.to_string(), c);
    }
    let version = env!("CARGO_PKG_VERSION");
    let config = json!({
        "dev": {
            "ids": [node.clone()],
            "name": format!("landfall {}", inv.device_id),
            "mf": "landfall",
            "mdl": "landfall",
            "sw": version,
        },
        "o": {
            "name": "landfall",
            "sw": version,
            "url": env!("CARGO_PKG_REPOSITORY"),
        },
        "cmps": cmps,
        // Shared by every component.
        "availability_topic": topics.status,
        "payload_available": ONLINE,
        "payload_not_available": OFFLINE,
        "qos": 1,
    });
    OutMessage {
        topic: format!("{discovery_prefix}/device/{node}/config"),
        payload: config.to_string(),
        retain: true,
        correlation_data: None,
        durable: false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inventory<'a>(cameras: &'a [String], classifiers: &'a [String]) -> DeviceInventory<'a> {
        DeviceInventory {
            device_id: "dev.1",
            cameras,
            classifiers,
            has_temperature: false,
        }
    }

    #[test]
    fn one_device_message_with_every_component() {
        let topics = Topics::new("landfall", "dev.1", None);
        let cameras = ["door".to_string(), "yard".to_string()];
        let classifiers = ["sentiment-zh".to_string()];
        let msg = device_discovery("homeassistant", &topics, inventory(&cameras, &classifiers));
        assert_eq!(msg.topic, "homeassistant/device/landfall_dev_1/config");
        assert!(msg.retain);
        let v: Value = serde_json::from_str(&msg.payload).unwrap();
        assert_eq!(v["dev"]["ids"][0], "landfall_dev_1");
        assert_eq!(v["o"]["name"], "landfall");
        assert_eq!(v["o"]["sw"], env!("CARGO_PKG_VERSION"));
        assert_eq!(v["availability_topic"], "landfall/dev.1/status");
        let cmps = v["cmps"].as_object().unwrap();
        // 3 per camera, 1 per classifier, the health figures.
        assert_eq!(cmps.len(), 2 * 3 + 1 + figures::FIGURES.len());
        let door = &cmps["camera_door_caption"];
        assert_eq!(door["p"], "sensor");
        assert_eq!(door["state_topic"], "landfall/dev.1/camera/door/caption");
        assert_eq!(door["json_attributes_topic"], door["state_topic"]);
        assert_eq!(door["unique_id"], "landfall_dev_1_camera_door_caption");
        let switch = &cmps["camera_yard_captions"];
        assert_eq!(switch["p"], "switch");
        assert_eq!(
            switch["command_topic"],
            "landfall/dev.1/camera/yard/captions/set"
        );
        assert_eq!(switch["state_topic"], "landfall/dev.1/camera/yard/captions");
        let number = &cmps["camera_yard_interval"];
        assert_eq!(number["p"], "number");
        assert_eq!(
            number["command_topic"],
            "landfall/dev.1/camera/yard/interval/set"
        );
        assert_eq!(
            (number["min"].as_u64(), number["max"].as_u64()),
            (Some(1), Some(86_400))
        );
        let result = &cmps["classifier_sentiment-zh_result"];
        assert_eq!(result["state_topic"], "landfall/dev.1/classify/result");
        let template = result["value_template"].as_str().unwrap();
        assert!(
            template.contains(r#"value_json.classifier == "sentiment-zh""#),
            "{template}"
        );
        assert!(template.contains("this.state"), "{template}");
        let ids: std::collections::BTreeSet<&str> = cmps
            .values()
            .map(|c| c["unique_id"].as_str().unwrap())
            .collect();
        assert_eq!(ids.len(), cmps.len(), "unique ids are unique");

        let mut with_temp = inventory(&[], &[]);
        with_temp.has_temperature = true;
        let v: Value =
            serde_json::from_str(&device_discovery("ha", &topics, with_temp).payload).unwrap();
        assert_eq!(v["cmps"]["temperature"]["device_class"], "temperature");
    }

    #[test]
    fn a_classifier_name_with_quotes_stays_one_jinja_string() {
        let topics = Topics::new("landfall", "d", None);
        let classifiers = [r#"a"b"#.to_string()];
        let msg = device_discovery("ha", &topics, inventory(&[], &classifiers));
        let v: Value = serde_json::from_str(&msg.payload).unwrap();
        let t = v["cmps"]["classifier_a_b_result"]["value_template"]
            .as_str()
            .unwrap();
        assert!(t.contains(r#"== "a\"b""#), "{t}");
    }
}
