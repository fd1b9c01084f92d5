//! RawConfig -> Config: defaults, checks, and errors positioned at the value at fault.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::num::NonZeroU16;
use std::path::{Path, PathBuf};
use std::time::Duration;

use toml::Spanned;

use super::ctx::{span_of, Ctx};
use super::raw::{Embedded, RawClassifier, RawConfig, RawTls, Sp};
use super::settings::{
    hostname, ClassifierConfig, Config, ConfigError, HealthConfig, ModelsConfig, MqttConfig,
    Protocol, QueueConfig, SchedulerConfig, TlsConfig, UpdatesConfig,
};
use super::vision;

const DEFAULT_PORT: u16 = 1883;
const DEFAULT_TLS_PORT: u16 = 8883;

fn default_queue_dir() -> PathBuf {
    // systemd's StateDirectory= sets this (possibly to several paths, colon-separated).
    match std::env::var("STATE_DIRECTORY") {
        Ok(dirs) if !dirs.is_empty() => {
            PathBuf::from(dirs.split(':').next().unwrap_or(&dirs)).join("queue")
        }
        _ => PathBuf::from("./state/queue"),
    }
}

pub(super) fn from_raw(raw: RawConfig, text: &str, file: &str) -> Result<Config, ConfigError> {
    let cx = Ctx { text, file };
    let mqtt = mqtt(&cx, &raw.mqtt)?;
    let health = HealthConfig {
        interval: cx.duration(
            &raw.health.interval,
            "health.interval",
            Duration::from_secs(30),
        )?,
    };
    if health.interval.is_zero() {
        return Err(cx.err(
            span_of(&raw.health.interval),
            "health.interval",
            "must be above 0",
        ));
    }
    let queue = QueueConfig {
        dir: cx
            .string(&raw.queue.dir, "queue.dir")?
            .map_or_else(default_queue_dir, PathBuf::from),
        max_entries: cx.count(
            &raw.queue.max_entries,
            "queue.max_entries",
            10_000,
            10_000_000,
        )?,
    };
    let scheduler = SchedulerConfig {
        queue_capacity: cx.count(
            &raw.scheduler.queue_capacity,
            "scheduler.queue_capacity",
            256,
            1_000_000,
        )?,
        max_batch: cx.count(&raw.scheduler.max_batch, "scheduler.max_batch", 16, 1024)?,
        max_wait: match &raw.scheduler.max_wait_ms {
            None => Duration::from_millis(5),
            Some(ms) => u64::try_from(*ms.get_ref())
                .ok()
                .filter(|&ms| ms <= 60_000)
                .map(Duration::from_millis)
                .ok_or_else(|| {
                    cx.err(
                        ms.span(),
                        "scheduler.max_wait_ms",
                        "must be between 0 and 60000",
                    )
                })?,
        },
    };
    let models = ModelsConfig {
        dir: cx
            .string(&raw.models.dir, "models.dir")?
            .map_or_else(|| PathBuf::from("./models"), PathBuf::from),
    };
    let mut classifiers: Vec<ClassifierConfig> = Vec::new();
    for (i, entry) in raw.classifiers.iter().enumerate() {
        let c = classifier(&cx, entry, i, &models.dir)?;
        if let Some(name) = &entry.get_ref().name {
            if classifiers.iter().any(|other| other.name == c.name) {
                let field = format!("classifier[{i}].name");
                return Err(cx.err(
                    name.span(),
                    &field,
                    format!("{:?} is already the name of another classifier", c.name),
                ));
            }
        }
        classifiers.push(c);
    }
    let captioner = vision::captioner(&cx, &raw.captioner, &models.dir)?;
    let templates = vision::templates(&cx, &raw.templates)?;
    let cameras = vision::cameras(&cx, &raw.cameras)?;
    let homeassistant = vision::homeassistant(&cx, &raw.homeassistant)?;
    let http = super::http::http(&cx, &raw.http, mqtt.max_payload_bytes.get())?;
    let updates = raw
        .updates
        .as_ref()
        .map(|u| updates(&cx, u, &models.dir))
        .transpose()?;
    Ok(Config {
        mqtt,
        health,
        queue,
        scheduler,
        models,
        classifiers,
        captioner,
        templates,
        cameras,
        homeassistant,
        updates,
        http,
    })
}

fn updates(
    cx: &Ctx,
    u: &Spanned<super::raw::RawUpdates>,
    models: &Path,
) -> Result<UpdatesConfig, ConfigError> {
    let raw = u.get_ref();
    let _ = models;
    let repository = cx
        .string(&raw.repository, "updates.repository")?
        .ok_or_else(|| {
            cx.err(
                u.span(),
                "updates.repository",
                "required: the TUF repository's URL (https://...) or directory",
            )
        })?;
    let root = cx.string(&raw.root, "updates.root")?.ok_or_else(|| {
        cx.err(
            u.span(),
            "updates.root",
            "required: the trusted root.json, installed out of band",
        )
    })?;
    let root = std::path::absolute(&root).unwrap_or_else(|_| PathBuf::from(&root));
    if !root.is_file() {
        return Err(cx.err(
            span_of(&raw.root),
            "updates.root",
            format!(
                "{}: no such file (copy the repository's 1.root.json here)",
                root.display()
            ),
        ));
    }
    let interval = cx.duration(&raw.interval, "updates.interval", Duration::from_secs(900))?;
    let dir = cx
        .string(&raw.dir, "updates.dir")?
        .map_or_else(crate::updates::default_dir, PathBuf::from);
    Ok(UpdatesConfig {
        repository,
        root,
        interval: (!interval.is_zero()).then_some(interval),
        dir: std::path::absolute(&dir).unwrap_or(dir),
    })
}

fn mqtt(cx: &Ctx, m: &super::raw::RawMqtt) -> Result<MqttConfig, ConfigError> {
    let host = cx.string(&m.host, "mqtt.host")?;
    let tls = m.tls.as_ref().map(|t| tls(cx, t)).transpose()?;
    let port = match &m.port {
        None if tls.is_some() => NonZeroU16::new(DEFAULT_TLS_PORT),
        None => NonZeroU16::new(DEFAULT_PORT),
        Some(p) => u16::try_from(*p.get_ref()).ok().and_then(NonZeroU16::new),
    }
    .ok_or_else(|| cx.err(span_of(&m.port), "mqtt.port", "must be between 1 and 65535"))?;
    let embedded = m
        .embedded_broker
        .as_ref()
        .map_or(Embedded::Auto, |e| e.get_ref().clone());
    let embedded_span = span_of(&m.embedded_broker);
    let (host, embedded_listen) = match (embedded, host) {
        (Embedded::Auto, None) | (Embedded::Yes, None) => (
            Ipv4Addr::LOCALHOST.to_string(),
            Some(SocketAddr::new(Ipv4Addr::LOCALHOST.into(), port.get())),
        ),
        (Embedded::Auto, Some(h)) | (Embedded::No, Some(h)) => (h, None),
        (Embedded::Yes, Some(h)) => {
            let ip: IpAddr = h.parse().map_err(|_| {
                cx.err(span_of(&m.host), "mqtt.host", format!("{h:?}: with embedded_broker = true the host is the address the broker listens on and must be an IP address such as 127.0.0.1 or 0.0.0.0"))
            })?;
            // A broker listening on every interface is reached through loopback.
            let connect = if ip.is_unspecified() {
                Ipv4Addr::LOCALHOST.into()
            } else {
                ip
            };
            (connect.to_string(), Some(SocketAddr::new(ip, port.get())))
        }
        (Embedded::No, None) => {
            return Err(cx.err(
                embedded_span,
                "mqtt.host",
                "required when embedded_broker = false: set the broker's host name or address",
            ));
        }
        (Embedded::Other(v), _) => {
            return Err(cx.err(
                embedded_span,
                "mqtt.embedded_broker",
                format!("{v:?}: expected true, false or \"auto\""),
            ));
        }
    };
    if embedded_listen.is_some() && tls.is_some() {
        let span = m.tls.as_ref().map_or(0..0, Spanned::span);
        return Err(cx.err(span, "mqtt.tls", "TLS is for an external broker; the embedded one listens on plain TCP (set mqtt.host to your broker, or remove [mqtt.tls])"));
    }
    let device_id = cx
        .topic_part(&m.device_id, "mqtt.device_id", false)?
        .unwrap_or_else(hostname);
    let topic_prefix = cx
        .topic_part(&m.topic_prefix, "mqtt.topic_prefix", true)?
        .unwrap_or_else(|| "landfall".into());
    let fleet_group = cx.topic_part(&m.fleet_group, "mqtt.fleet_group", false)?;
    let client_id = cx
        .string(&m.client_id, "mqtt.client_id")?
        .unwrap_or_else(|| format!("landfall-{device_id}"));
    let protocol = match m
        .protocol
        .as_ref()
        .map(|p| (p.get_ref().as_str(), p.span()))
    {
        None | Some(("v5", _)) | Some(("5", _)) => Protocol::V5,
        Some(("v311", _)) | Some(("v3.1.1", _)) | Some(("v4", _)) => Protocol::V311,
        Some((other, span)) => {
            return Err(cx.err(
                span,
                "mqtt.protocol",
                format!("{other:?}: expected \"v5\" or \"v311\""),
            ));
        }
    };
    let keep_alive = cx.duration(&m.keep_alive, "mqtt.keep_alive", Duration::from_secs(30))?;
    if keep_alive < Duration::from_secs(5) || keep_alive.as_secs() > u64::from(u16::MAX) {
        return Err(cx.err(
            span_of(&m.keep_alive),
            "mqtt.keep_alive",
            "must be between 5s and 65535s",
        ));
    }
    let session_expiry = cx.duration(
        &m.session_expiry,
        "mqtt.session_expiry",
        Duration::from_secs(86400),
    )?;
    if session_expiry.as_secs() > u64::from(u32::MAX) {
        return Err(cx.err(
            span_of(&m.session_expiry),
            "mqtt.session_expiry",
            "must be below 4294967295s",
        ));
    }
    let username = cx.string(&m.username, "mqtt.username")?;
    let password = m.password.as_ref().map(|p| p.get_ref().clone());
    if password.is_some() && username.is_none() {
        return Err(cx.err(
            span_of(&m.password),
            "mqtt.password",
            "needs mqtt.username as well",
        ));
    }
    Ok(MqttConfig {
        host,
        port,
        embedded_listen,
        client_id,
        topic_prefix,
        device_id,
        username,
        password,
        tls,
        protocol,
        keep_alive,
        session_expiry,
        fleet_group,
        max_payload_bytes: cx.count(
            &m.max_payload_bytes,
            "mqtt.max_payload_bytes",
            1 << 20,
            256 << 20,
        )?,
    })
}

fn tls(cx: &Ctx, t: &Spanned<RawTls>) -> Result<TlsConfig, ConfigError> {
    let raw = t.get_ref();
    let file = |v: &Sp<String>, field: &str| -> Result<Option<PathBuf>, ConfigError> {
        let Some(path) = cx.string(v, field)? else {
            return Ok(None);
        };
        let path = PathBuf::from(path);
        if !path.is_file() {
            return Err(cx.err(
                span_of(v),
                field,
                format!("{}: no such file", path.display()),
            ));
        }
        Ok(Some(path))
    };
    let ca_file = file(&raw.ca_file, "mqtt.tls.ca_file")?.ok_or_else(|| {
        cx.err(
            t.span(),
            "mqtt.tls.ca_file",
            "required: the CA certificate (PEM) that signed the broker's certificate",
        )
    })?;
    let cert = file(&raw.cert_file, "mqtt.tls.cert_file")?;
    let key = file(&raw.key_file, "mqtt.tls.key_file")?;
    let client_auth = match (cert, key) {
        (Some(c), Some(k)) => Some((c, k)),
        (None, None) => None,
        (Some(_), None) => {
            return Err(cx.err(
                span_of(&raw.cert_file),
                "mqtt.tls.key_file",
                "required with cert_file",
            ))
        }
        (None, Some(_)) => {
            return Err(cx.err(
                span_of(&raw.key_file),
                "mqtt.tls.cert_file",
                "required with key_file",
            ))
        }
    };
    Ok(TlsConfig {
        ca_file,
        client_auth,
    })
}

fn classifier(
    cx: &Ctx,
    entry: &Spanned<RawClassifier>,
    i: usize,
    models: &Path,
) -> Result<ClassifierConfig, ConfigError> {
    let c = entry.get_ref();
    let f = |name: &str| format!("classifier[{i}].{name}");
    let required = |v: &Sp<String>, name: &str, what: &str| -> Result<String, ConfigError> {
        cx.string(v, &f(name))?
            .ok_or_else(|| cx.err(entry.span(), &f(name), format!("required: {what}")))
    };
    let name = required(&c.name, "name", "the name requests use in \"classifier\"")?;
    // Absolute, so the printed effective config means the same when read from elsewhere.
    let resolve = |p: String| {
        let joined = models.join(p);
        std::path::absolute(&joined).unwrap_or(joined)
    };
    let base = resolve(required(&c.base, "base", "the BERT base model directory")?);
    let adapter = cx.string(&c.adapter, &f("adapter"))?.map(resolve);
    let labels = match &c.labels {
        Some(l) if l.get_ref().is_empty() || l.get_ref().iter().any(|s| s.trim().is_empty()) => {
            return Err(cx.err(
                l.span(),
                &f("labels"),
                "must be a non-empty list of non-empty names",
            ));
        }
        l => l.as_ref().map(|l| l.get_ref().clone()),
    };
    Ok(ClassifierConfig {
        name,
        base,
        adapter,
        labels,
        quant: cx.parsed(&c.quant, &f("quant"))?.unwrap_or_default(),
        device: cx.parsed(&c.device, &f("device"))?.unwrap_or_default(),
        dtype: cx.parsed(&c.dtype, &f("dtype"))?,
        follow_updates: c.updates.as_ref().is_none_or(|u| *u.get_ref()),
    })
}
