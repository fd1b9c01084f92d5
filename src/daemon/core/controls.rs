//! Camera settings changed over MQTT, as Home Assistant's switch and number entities (and anyone
//! else) send them: `P/camera/<cam>/captions/set` (`ON`/`OFF`) and `P/camera/<cam>/interval/set`
//! (seconds). Each takes effect at once, without a restart, and the new state is published
//! retained on `P/camera/<cam>/captions` and `P/camera/<cam>/interval`. A command the daemon
//! cannot read is logged and changes nothing.

use std::time::{Duration, Instant};

use crate::mqtt::topics::{CameraSetting, INTERVAL_BOUNDS_S};

use super::answers::status_message;
use super::events::Action;
use super::Core;

/// The shortest and longest caption interval that can be set.
const MIN_INTERVAL: Duration = Duration::from_secs(INTERVAL_BOUNDS_S.0);
const MAX_INTERVAL: Duration = Duration::from_secs(INTERVAL_BOUNDS_S.1);

/// `ON`/`OFF` as Home Assistant's switches send them (also true/false, 1/0, any case).
fn parse_switch(payload: &str) -> Option<bool> {
    match payload.trim().to_ascii_lowercase().as_str() {
        "on" | "true" | "1" => Some(true),
        "off" | "false" | "0" => Some(false),
        _ => None,
    }
}

/// Seconds, as a number (`30`, `2.5`), within [`MIN_INTERVAL`]..=[`MAX_INTERVAL`].
fn parse_interval(payload: &str) -> Option<Duration> {
    let secs: f64 = payload.trim().parse().ok()?;
    if !secs.is_finite() {
        return None;
    }
    let d = Duration::from_secs_f64(secs.max(0.0));
    (MIN_INTERVAL..=MAX_INTERVAL).contains(&d).then_some(d)
}

impl Core {
    /// A message on a camera's `.../set` topic.
    pub(super) fn on_camera_control(
        &mut self,
        camera: &str,
        setting: CameraSetting,
        payload: &[u8],
        now: Instant,
    ) {
        let Some(i) = self.cameras.index_of(camera) else {
            tracing::warn!(
                "a {} command for camera {camera:?}, which this device does not have",
                setting.as_str()
            );
            return;
        };
        let text = String::from_utf8_lossy(payload);
        match setting {
            CameraSetting::Captions => match parse_switch(&text) {
                Some(on) => {
                    tracing::info!("camera {camera:?}: periodic captions {}", if on { "on" } else { "off" });
                    self.cameras.set_enabled(i, on, now);
                }
                None => tracing::warn!("camera {camera:?}: captions command {text:?} is not ON or OFF"),
            },
            CameraSetting::Interval => match parse_interval(&text) {
                Some(interval) => {
                    tracing::info!("camera {camera:?}: captions every {interval:?}");
                    self.cameras.set_interval(i, interval, now);
                }
                None => tracing::warn!(
                    "camera {camera:?}: interval command {text:?} is not a number of seconds from {} to {}",
                    MIN_INTERVAL.as_secs(),
                    MAX_INTERVAL.as_secs()
                ),
            },
        }
        // The state as it is now, also after a command that changed nothing.
        self.publish_camera_settings(i);
    }

    /// Camera `i`'s settings, retained, for dashboards and Home Assistant's entities.
    pub(super) fn publish_camera_settings(&mut self, i: usize) {
        let name = self.cameras.name(i).to_string();
        let on = if self.cameras.enabled(i) { "ON" } else { "OFF" };
        let interval = self.cameras.interval(i).as_secs_f64();
        for (setting, value) in [
            (CameraSetting::Captions, on.to_string()),
            (CameraSetting::Interval, format!("{interval}")),
        ] {
            let msg = status_message(&self.topics.camera_setting(&name, setting), value);
            self.actions.push(Action::Publish { msg, ack: None });
        }
    }

    /// Every camera's settings (on each connect).
    pub(super) fn publish_all_camera_settings(&mut self) {
        for i in 0..self.cameras.len() {
            self.publish_camera_settings(i);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn switch_and_interval_commands_are_read_leniently_and_checked() {
        assert_eq!(parse_switch("ON"), Some(true));
        assert_eq!(parse_switch(" off\n"), Some(false));
        assert_eq!(parse_switch("maybe"), None);
        assert_eq!(parse_interval("30"), Some(Duration::from_secs(30)));
        assert_eq!(parse_interval("2.5"), Some(Duration::from_millis(2500)));
        assert_eq!(parse_interval("0"), None);
        assert_eq!(parse_interval("-5"), None);
        assert_eq!(parse_interval("1e9"), None);
        assert_eq!(parse_interval("NaN"), None);
        assert_eq!(parse_interval("soon"), None);
    }
}
