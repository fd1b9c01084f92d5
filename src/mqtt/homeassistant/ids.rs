//! Node and object ids in the alphabet Home Assistant accepts in discovery topics.

/// A topic level Home Assistant accepts as node or object id: `[a-zA-Z0-9_-]`.
pub fn id_part(s: &str) -> String {
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

/// The device's node id: `landfall_<device_id>` in Home Assistant's id alphabet.
pub fn node_id(device_id: &str) -> String {
    id_part(&format!("landfall_{device_id}"))
}
