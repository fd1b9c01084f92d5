//! The move from the per-entity discovery messages of earlier versions
//! (`<discovery_prefix>/sensor/landfall_<device_id>/<object>/config`, retained) to the one device
//! message, the way Home Assistant documents it: `{"migrate_discovery": true}` on each old topic
//! (Home Assistant keeps the entity and lets the device message take it over, history and
//! entity id included, as the unique ids are the same), then the device message, then an empty
//! retained payload on each old topic so that the broker forgets the old config.

use super::figures::{FIGURES, TEMPERATURE};
use super::ids::{id_part, node_id};
use crate::mqtt::spool::OutMessage;

/// The old topics' messages: the migration markers (send before the device message) and the
/// empty retained payloads that remove them (send after it).
pub fn legacy_removal(
    discovery_prefix: &str,
    device_id: &str,
    cameras: &[String],
) -> (Vec<OutMessage>, Vec<OutMessage>) {
    let node = node_id(device_id);
    let objects = cameras
        .iter()
        .map(|cam| id_part(&format!("camera_{cam}_caption")))
        .chain(
            FIGURES
                .iter()
                .chain([&TEMPERATURE])
                .map(|f| f.object.to_string()),
        );
    let message = |topic: &str, payload: &str, retain: bool| OutMessage {
        topic: topic.to_string(),
        payload: payload.to_string(),
        retain,
        correlation_data: None,
        durable: false,
    };
    let (mut migrate, mut remove) = (Vec::new(), Vec::new());
    for object in objects {
        let topic = format!("{discovery_prefix}/sensor/{node}/{object}/config");
        migrate.push(message(&topic, r#"{"migrate_discovery":true}"#, false));
        remove.push(message(&topic, "", true));
    }
    (migrate, remove)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_old_topic_is_migrated_then_emptied_retained() {
        let (migrate, remove) = legacy_removal("homeassistant", "dev.1", &["door".into()]);
        assert_eq!(migrate.len(), 1 + FIGURES.len() + 1);
        assert_eq!(
            migrate[0].topic,
            "homeassistant/sensor/landfall_dev_1/camera_door_caption/config"
        );
        assert!(migrate.iter().all(|m| !m.retain));
        assert!(remove.iter().all(|m| m.retain && m.payload.is_empty()));
        assert!(remove
            .iter()
            .any(|m| m.topic == "homeassistant/sensor/landfall_dev_1/temperature/config"));
    }
}
