//! Config -> the effective config as TOML, for `landfall check-config`: every default filled in,
//! paths resolved, the password masked. What it prints reads back to the same config.

use std::path::Path;

use toml::Spanned;

use super::duration::format_duration;
use super::raw::{sp, DurationText, Embedded, RawCamera, RawClassifier, RawConfig, RawTls};
use super::settings::Config;

/// Masks the broker password in the printed config, which may end up in logs.
const PASSWORD_MASK: &str = "********";

/// The validated config as a fully filled-in raw one, for printing.
pub(super) fn to_raw(c: &Config) -> RawConfig {
    let m = &c.mqtt;
    let path = |p: &Path| sp(p.display().to_string());
    let mut raw = RawConfig::default();
    raw.mqtt.host = sp(m
        .embedded_listen
        .map_or_else(|| m.host.clone(), |a| a.ip().to_string()));
    raw.mqtt.port = sp(i64::from(m.port.get()));
    raw.mqtt.embedded_broker = sp(if m.embedded_listen.is_some() {
        Embedded::Yes
    } else {
        Embedded::No
    });
    raw.mqtt.client_id = sp(m.client_id.clone());
    raw.mqtt.topic_prefix = sp(m.topic_prefix.clone());
    raw.mqtt.device_id = sp(m.device_id.clone());
    raw.mqtt.username = m.username.clone().and_then(sp);
    raw.mqtt.password = m
        .password
        .as_ref()
        .and_then(|_| sp(PASSWORD_MASK.to_string()));
    raw.mqtt.protocol = sp(m.protocol.as_str().to_string());
    raw.mqtt.keep_alive = sp(DurationText(format_duration(m.keep_alive)));
    raw.mqtt.session_expiry = sp(DurationText(format_duration(m.session_expiry)));
    raw.mqtt.fleet_group = m.fleet_group.clone().and_then(sp);
    raw.mqtt.max_payload_bytes = sp(m.max_payload_bytes.get() as i64);
    raw.mqtt.tls = m.tls.as_ref().map(|t| {
        Spanned::new(
            0..0,
            RawTls {
                ca_file: path(&t.ca_file),
                cert_file: t.client_auth.as_ref().and_then(|(c, _)| path(c)),
                key_file: t.client_auth.as_ref().and_then(|(_, k)| path(k)),
            },
        )
    });
    raw.health.interval = sp(DurationText(format_duration(c.health.interval)));
    raw.queue.dir = path(&c.queue.dir);
    raw.queue.max_entries = sp(c.queue.max_entries.get() as i64);
    raw.scheduler.queue_capacity = sp(c.scheduler.queue_capacity.get() as i64);
    raw.scheduler.max_batch = sp(c.scheduler.max_batch.get() as i64);
    raw.scheduler.max_wait_ms = sp(c.scheduler.max_wait.as_millis() as i64);
    raw.models.dir = path(&c.models.dir);
    raw.classifiers = c
        .classifiers
        .iter()
        .map(|k| {
            Spanned::new(
                0..0,
                RawClassifier {
                    name: sp(k.name.clone()),
                    base: path(&k.base),
                    adapter: k.adapter.as_deref().and_then(path),
                    labels: k.labels.clone().and_then(sp),
                    quant: sp(k.quant.to_string()),
                    device: sp(k.device.to_string()),
                    dtype: k.dtype.and_then(|d| sp(d.as_str().to_string())),
                    updates: sp(k.follow_updates),
                },
            )
        })
        .collect();
    let k = &c.captioner;
    raw.captioner.model = path(&k.model);
    raw.captioner.quant = sp(k.quant.to_string());
    raw.captioner.device = sp(k.device.to_string());
    raw.captioner.dtype = k.dtype.and_then(|d| sp(d.as_str().to_string()));
    raw.captioner.max_new_tokens = sp(k.max_new_tokens as i64);
    raw.captioner.prompt = sp(k.prompt.clone());
    raw.templates = c
        .templates
        .iter()
        .map(|(name, text)| (name.clone(), Spanned::new(0..0, text.clone())))
        .collect();
    raw.cameras = c
        .cameras
        .iter()
        .map(|cam| {
            Spanned::new(
                0..0,
                RawCamera {
                    name: sp(cam.name.clone()),
                    source: sp(cam.source.to_string()),
                    fps: sp(cam.fps),
                    resolution: cam.resolution.and_then(|r| sp(r.to_string())),
                    pixel_format: cam.pixel_format.and_then(|f| sp(f.to_string())),
                    interval: sp(DurationText(
                        cam.interval
                            .map_or_else(|| "0s".to_string(), format_duration),
                    )),
                    caption_on_change: sp(cam.caption_on_change),
                    scene_threshold: sp(cam.scene_threshold),
                    prompt: cam.prompt.clone().and_then(sp),
                },
            )
        })
        .collect();
    raw.http = super::http::to_raw(&c.http);
    raw.homeassistant.enabled = sp(c.homeassistant.enabled);
    raw.homeassistant.discovery_prefix = sp(c.homeassistant.discovery_prefix.clone());
    raw.updates = c.updates.as_ref().map(|u| {
        Spanned::new(
            0..0,
            super::raw::RawUpdates {
                repository: sp(u.repository.clone()),
                root: path(&u.root),
                interval: sp(DurationText(
                    u.interval.map_or_else(|| "0s".to_string(), format_duration),
                )),
                dir: path(&u.dir),
            },
        )
    });
    raw
}
