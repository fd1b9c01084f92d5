//! The config file as written: every field optional and spanned, so that validation
//! ([`super::Config::from_raw`]) can point at the line of a bad value. Also serialized back,
//! fully filled in, as the effective config that `landfall check-config` prints.

use std::collections::BTreeMap;
use std::fmt;

use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize, Serializer};
use toml::Spanned;

/// A value with the position it had in the file (`0..0` for defaults).
pub type Sp<T> = Option<Spanned<T>>;

/// Wraps a default or derived value for serialization.
pub fn sp<T>(value: T) -> Sp<T> {
    Some(Spanned::new(0..0, value))
}

#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    #[serde(default)]
    pub mqtt: RawMqtt,
    #[serde(default)]
    pub health: RawHealth,
    #[serde(default)]
    pub queue: RawQueue,
    #[serde(default)]
    pub scheduler: RawScheduler,
    #[serde(default)]
    pub models: RawModels,
    #[serde(default, rename = "classifier", skip_serializing_if = "Vec::is_empty")]
    pub classifiers: Vec<Spanned<RawClassifier>>,
    #[serde(default)]
    pub captioner: RawCaptioner,
    /// VQA prompt templates by name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub templates: BTreeMap<String, Spanned<String>>,
    #[serde(default, rename = "camera", skip_serializing_if = "Vec::is_empty")]
    pub cameras: Vec<Spanned<RawCamera>>,
    #[serde(default)]
    pub homeassistant: RawHomeAssistant,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub updates: Option<Spanned<RawUpdates>>,
    #[serde(default)]
    pub http: RawHttp,
}

/// `[http]`: the HTTP API beside MQTT.
#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawHttp {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub enabled: Sp<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub listen: Sp<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token: Sp<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cors_origins: Vec<Spanned<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_body_bytes: Sp<i64>,
}

/// `[updates]`: where signed adapter updates come from.
#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawUpdates {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub repository: Sp<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub root: Sp<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub interval: Sp<DurationText>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dir: Sp<String>,
}

#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawMqtt {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host: Sp<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub port: Sp<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_id: Sp<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub topic_prefix: Sp<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub device_id: Sp<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub username: Sp<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub password: Sp<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub protocol: Sp<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub keep_alive: Sp<DurationText>,
    /// How long the broker keeps this daemon's session (subscriptions, queued requests) while it
    /// is away; 0 = a clean session on every connect.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub session_expiry: Sp<DurationText>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fleet_group: Sp<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_payload_bytes: Sp<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub embedded_broker: Sp<Embedded>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls: Option<Spanned<RawTls>>,
}

#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawTls {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ca_file: Sp<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cert_file: Sp<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key_file: Sp<String>,
}

#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawHealth {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub interval: Sp<DurationText>,
}

#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawQueue {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dir: Sp<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_entries: Sp<i64>,
}

#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawScheduler {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub queue_capacity: Sp<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_batch: Sp<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_wait_ms: Sp<i64>,
}

#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawModels {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dir: Sp<String>,
}

#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawClassifier {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Sp<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub base: Sp<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub adapter: Sp<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub labels: Sp<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub quant: Sp<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub device: Sp<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dtype: Sp<String>,
    /// Follow the update repository (when `[updates]` is set); default true.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub updates: Sp<bool>,
}

#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawCaptioner {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model: Sp<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub quant: Sp<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub device: Sp<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dtype: Sp<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_new_tokens: Sp<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prompt: Sp<String>,
}

#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawCamera {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Sp<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source: Sp<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fps: Sp<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resolution: Sp<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pixel_format: Sp<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub interval: Sp<DurationText>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub caption_on_change: Sp<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scene_threshold: Sp<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prompt: Sp<String>,
}

#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawHomeAssistant {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub enabled: Sp<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub discovery_prefix: Sp<String>,
}

/// A duration as written: whole seconds (`30`) or a number with a unit (`"500ms"`, `"30s"`,
/// `"5m"`, `"1h"`, `"1d"`). Parsed during validation, so a bad unit gets a positioned error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DurationText(pub String);

impl<'de> Deserialize<'de> for DurationText {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = DurationText;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("seconds as an integer, or a string like \"500ms\", \"30s\", \"5m\"")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<DurationText, E> {
                Ok(DurationText(format!("{v}s")))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<DurationText, E> {
                Ok(DurationText(format!("{v}s")))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<DurationText, E> {
                Ok(DurationText(v.to_string()))
            }
        }
        d.deserialize_any(V)
    }
}

impl Serialize for DurationText {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

/// `embedded_broker`: `true`, `false` or `"auto"` (a broker of our own when no host is set).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Embedded {
    Yes,
    No,
    Auto,
    /// Anything else, kept so validation can name it with its position.
    Other(String),
}

impl<'de> Deserialize<'de> for Embedded {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Embedded;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("true, false or \"auto\"")
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<Embedded, E> {
                Ok(if v { Embedded::Yes } else { Embedded::No })
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Embedded, E> {
                Ok(match v {
                    "auto" => Embedded::Auto,
                    "true" => Embedded::Yes,
                    "false" => Embedded::No,
                    other => Embedded::Other(other.to_string()),
                })
            }
        }
        d.deserialize_any(V)
    }
}

impl Serialize for Embedded {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Self::Yes => s.serialize_bool(true),
            Self::No => s.serialize_bool(false),
            Self::Auto => s.serialize_str("auto"),
            Self::Other(v) => s.serialize_str(v),
        }
    }
}
