//! The health figures that Home Assistant shows as diagnostic sensors of the device: which field
//! of `P/health` each reads, its unit and classes.

/// A health figure as a sensor.
pub(super) struct Figure {
    /// Component id inside the device (also the old per-entity discovery object id).
    pub object: &'static str,
    pub name: &'static str,
    pub template: &'static str,
    pub unit: Option<&'static str>,
    pub device_class: Option<&'static str>,
    pub state_class: &'static str,
}

const fn figure(
    object: &'static str,
    name: &'static str,
    template: &'static str,
    unit: Option<&'static str>,
    device_class: Option<&'static str>,
    state_class: &'static str,
) -> Figure {
    Figure {
        object,
        name,
        template,
        unit,
        device_class,
        state_class,
    }
}

pub(super) const FIGURES: &[Figure] = &[
    figure(
        "cpu",
        "CPU",
        "{{ value_json.system.cpu_percent }}",
        Some("%"),
        None,
        "measurement",
    ),
    figure(
        "memory",
        "Memory",
        "{{ (value_json.system.rss_bytes / 1048576) | round(1) }}",
        Some("MiB"),
        Some("data_size"),
        "measurement",
    ),
    figure(
        "queue_depth",
        "Queue depth",
        "{{ value_json.queues.interactive + value_json.queues.periodic }}",
        None,
        None,
        "measurement",
    ),
    figure(
        "requests",
        "Requests",
        "{{ value_json.counters.requests }}",
        None,
        None,
        "total_increasing",
    ),
    figure(
        "errors",
        "Errors",
        "{{ value_json.counters.errors }}",
        None,
        None,
        "total_increasing",
    ),
    figure(
        "frames_dropped",
        "Frames dropped",
        "{{ value_json.counters.frames_dropped }}",
        None,
        None,
        "total_increasing",
    ),
    figure(
        "uptime",
        "Uptime",
        "{{ value_json.uptime_s }}",
        Some("s"),
        Some("duration"),
        "total_increasing",
    ),
];

/// The temperature sensor, only for machines that report one (else its template would fail).
pub(super) const TEMPERATURE: Figure = figure(
    "temperature",
    "Temperature",
    "{{ value_json.system.temperatures_c.values() | max }}",
    Some("°C"),
    Some("temperature"),
    "measurement",
);
