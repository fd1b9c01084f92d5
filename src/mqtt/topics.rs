//! Topic names of one device (`P` = `<topic_prefix>/<device_id>`): what it subscribes to, where
//! each answer goes, and which task a message on a request topic asks for. Payloads are in
//! [`crate::wire`].

use crate::wire::Task;

/// A camera setting that can be changed over MQTT.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CameraSetting {
    /// Periodic captions on or off: `ON` / `OFF`.
    Captions,
    /// Seconds between periodic captions.
    Interval,
}

impl CameraSetting {
    pub const ALL: [CameraSetting; 2] = [Self::Captions, Self::Interval];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Captions => "captions",
            Self::Interval => "interval",
        }
    }
}

/// The shortest and longest caption interval, in seconds, that `P/camera/<cam>/interval/set`
/// accepts (also the bounds of Home Assistant's number entity).
pub const INTERVAL_BOUNDS_S: (u64, u64) = (1, 86_400);

/// Every topic of one device, built once from the config.
#[derive(Debug, Clone)]
pub struct Topics {
    /// `<topic_prefix>/<device_id>`.
    pub device: String,
    /// `<topic_prefix>`.
    pub prefix: String,
    pub status: String,
    pub health: String,
    pub classify_request: String,
    pub classify_result: String,
    /// `$share/<group>/<topic_prefix>/fleet/classify/request`, when in a fleet.
    pub fleet_classify_request: Option<String>,
    /// The topic fleet requests carry (the filter above without `$share/<group>/`).
    fleet_classify_topic: Option<String>,
    pub caption_request: String,
    pub caption_result: String,
    pub vqa_request: String,
    pub vqa_result: String,
    /// Shared-subscription filters and the topics they carry, for caption and vqa.
    fleet_vision: Vec<(String, String, Task)>,
    /// Home Assistant's birth topic (`<discovery_prefix>/status`), when discovery is on.
    pub homeassistant_status: Option<String>,
    /// `P/adapters/announce` and `<topic_prefix>/fleet/adapters/announce`: check for updates now.
    pub adapters_announce: [String; 2],
    /// `P/adapters/state`, retained.
    pub adapters_state: String,
}

impl Topics {
    pub fn new(topic_prefix: &str, device_id: &str, fleet_group: Option<&str>) -> Self {
        let device = format!("{topic_prefix}/{device_id}");
        Self {
            status: format!("{device}/status"),
            health: format!("{device}/health"),
            classify_request: format!("{device}/classify/request"),
            classify_result: format!("{device}/classify/result"),
            fleet_classify_request: fleet_group
                .map(|g| format!("$share/{g}/{topic_prefix}/fleet/classify/request")),
            prefix: topic_prefix.to_string(),
            fleet_classify_topic: fleet_group
                .map(|_| format!("{topic_prefix}/fleet/classify/request")),
            caption_request: format!("{device}/caption/request"),
            caption_result: format!("{device}/caption/result"),
            vqa_request: format!("{device}/vqa/request"),
            vqa_result: format!("{device}/vqa/result"),
            fleet_vision: fleet_group
                .map(|g| {
                    [Task::Caption, Task::Vqa]
                        .into_iter()
                        .map(|t| {
                            let topic = format!("{topic_prefix}/fleet/{}/request", t.as_str());
                            (format!("$share/{g}/{topic}"), topic, t)
                        })
                        .collect()
                })
                .unwrap_or_default(),
            homeassistant_status: None,
            adapters_announce: [
                format!("{device}/adapters/announce"),
                format!("{topic_prefix}/fleet/adapters/announce"),
            ],
            adapters_state: format!("{device}/adapters/state"),
            device,
        }
    }

    /// Also listens for Home Assistant's birth message under `discovery_prefix`.
    pub fn with_homeassistant(mut self, discovery_prefix: &str) -> Self {
        self.homeassistant_status = Some(format!("{discovery_prefix}/status"));
        self
    }

    /// The filters the daemon subscribes to.
    pub fn subscriptions(&self) -> Vec<String> {
        let mut subs = vec![self.classify_request.clone()];
        subs.extend(self.fleet_classify_request.clone());
        subs.push(self.caption_request.clone());
        subs.push(self.vqa_request.clone());
        subs.extend(self.fleet_vision.iter().map(|(f, _, _)| f.clone()));
        subs.extend(self.homeassistant_status.clone());
        subs
    }

    /// The task a message on `topic` asks for, if it is a request topic (own or fleet).
    pub fn task_of(&self, topic: &str) -> Option<Task> {
        if self.is_classify_request(topic) {
            Some(Task::Classify)
        } else if topic == self.caption_request {
            Some(Task::Caption)
        } else if topic == self.vqa_request {
            Some(Task::Vqa)
        } else {
            self.fleet_vision
                .iter()
                .find(|(_, t, _)| t == topic)
                .map(|(_, _, task)| *task)
        }
    }

    /// Where a task's answers go when the request names no Response Topic.
    pub fn result_topic(&self, task: Task) -> &str {
        match task {
            Task::Classify => &self.classify_result,
            Task::Caption => &self.caption_result,
            Task::Vqa => &self.vqa_result,
        }
    }

    /// `P/camera/<cam>/caption`.
    pub fn camera_caption(&self, camera: &str) -> String {
        format!("{}/camera/{camera}/caption", self.device)
    }

    /// `P/camera/<cam>/<setting>`: where a camera setting's state is published (retained).
    pub fn camera_setting(&self, camera: &str, setting: CameraSetting) -> String {
        format!("{}/camera/{camera}/{}", self.device, setting.as_str())
    }

    /// The filters of the camera settings' `.../set` topics (Home Assistant's switch and number
    /// entities command through them).
    pub fn control_subscriptions(&self) -> Vec<String> {
        CameraSetting::ALL
            .iter()
            .map(|s| format!("{}/camera/+/{}/set", self.device, s.as_str()))
            .collect()
    }

    /// Whether `topic` is one of the update announcements.
    pub fn is_adapters_announce(&self, topic: &str) -> bool {
        self.adapters_announce.iter().any(|t| t == topic)
    }

    /// The camera and setting a `P/camera/<cam>/<setting>/set` topic commands.
    pub fn camera_control<'t>(&self, topic: &'t str) -> Option<(&'t str, CameraSetting)> {
        let rest = topic.strip_prefix(&self.device)?.strip_prefix("/camera/")?;
        let rest = rest.strip_suffix("/set")?;
        let (camera, setting) = rest.rsplit_once('/')?;
        let setting = CameraSetting::ALL
            .into_iter()
            .find(|s| s.as_str() == setting)?;
        (!camera.is_empty() && !camera.contains('/')).then_some((camera, setting))
    }

    /// Whether a message on `topic` is a classify request (own or fleet).
    pub fn is_classify_request(&self, topic: &str) -> bool {
        topic == self.classify_request || self.fleet_classify_topic.as_deref() == Some(topic)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn camera_controls_are_read_from_their_set_topics() {
        let t = Topics::new("landfall", "cam1", None);
        assert_eq!(
            t.camera_control("landfall/cam1/camera/door/captions/set"),
            Some(("door", CameraSetting::Captions))
        );
        assert_eq!(
            t.camera_control("landfall/cam1/camera/door/interval/set"),
            Some(("door", CameraSetting::Interval))
        );
        assert_eq!(t.camera_control("landfall/cam1/camera/door/captions"), None);
        assert_eq!(
            t.camera_control("landfall/cam2/camera/door/captions/set"),
            None
        );
        assert_eq!(
            t.camera_control("landfall/cam1/camera/a/b/captions/set"),
            None
        );
        assert_eq!(
            t.camera_setting("door", CameraSetting::Interval),
            "landfall/cam1/camera/door/interval"
        );
        assert_eq!(t.control_subscriptions().len(), 2);
    }

    #[test]
    fn topics_follow_prefix_device_and_fleet() {
        let t = Topics::new("landfall", "cam1", Some("g"));
        assert_eq!(t.status, "landfall/cam1/status");
        assert_eq!(
            t.subscriptions(),
            vec![
                "landfall/cam1/classify/request",
                "$share/g/landfall/fleet/classify/request",
                "landfall/cam1/caption/request",
                "landfall/cam1/vqa/request",
                "$share/g/landfall/fleet/caption/request",
                "$share/g/landfall/fleet/vqa/request",
            ]
        );
        assert_eq!(t.task_of("landfall/fleet/vqa/request"), Some(Task::Vqa));
        assert_eq!(
            t.task_of("landfall/cam1/caption/request"),
            Some(Task::Caption)
        );
        assert_eq!(t.task_of("landfall/cam1/caption/result"), None);
        assert_eq!(
            t.camera_caption("door"),
            "landfall/cam1/camera/door/caption"
        );
        assert!(t.is_classify_request("landfall/fleet/classify/request"));
        assert!(!Topics::new("landfall", "cam1", None)
            .is_classify_request("landfall/fleet/classify/request"));
    }
}
