"""Checks MQTT discovery messages the way Home Assistant's own MQTT integration reads them.

Reads one JSON object per line on stdin, `{"topic", "payload", "retain"}`, as the daemon sent
them under the discovery prefix (given as the only argument), and runs each through the code of
the `homeassistant` package: device messages through `_parse_device_payload` (abbreviations,
`DEVICE_DISCOVERY_SCHEMA`), then every component, with the device's shared options merged in as
Home Assistant merges them, through its platform's `DISCOVERY_SCHEMA`; a key that schema drops
(Home Assistant ignores unknown keys without a word) fails too. Per-entity topics may carry only
the migration marker or the empty payload that removes them. Then the templates are rendered by
Home Assistant's template engine against sample state payloads (`--render FILE`: lines of
`{"state_topic", "payload"}`), with the entity's previous state as `this`, as the MQTT sensor
renders them.

Prints one line per component checked and exits 1 on the first problem, naming it.
Run with the Python that has `homeassistant` installed (see tests/interop/ha-env.sh).
"""

import argparse
import asyncio
import importlib
import json
import logging
import re
import sys
import tempfile

import voluptuous as vol
from homeassistant.components.mqtt import discovery
from homeassistant.components.mqtt.discovery import MQTTDiscoveryPayload


def fail(message):
    print(f"FAIL {message}")
    sys.exit(1)


def check_component(where, platform, config):
    module = importlib.import_module(f"homeassistant.components.mqtt.{platform}")
    try:
        validated = module.DISCOVERY_SCHEMA(dict(config))
    except vol.Invalid as e:
        fail(f"{where}: Home Assistant's {platform} schema refuses it: {e}")
    dropped = sorted(set(config) - set(validated))
    if dropped:
        fail(f"{where}: keys Home Assistant's {platform} schema ignores: {dropped}")
    return validated


def check_device(prefix, topic, payload):
    m = re.fullmatch(re.escape(prefix) + r"/device/(?:([a-zA-Z0-9_-]+)/)?([a-zA-Z0-9_-]+)/config", topic)
    if not m:
        fail(f"{topic}: not a device discovery topic Home Assistant subscribes to")
    node_id, object_id = m.groups()
    try:
        discovery.DEVICE_DISCOVERY_SCHEMA(
            _expanded(MQTTDiscoveryPayload(json.loads(payload)))
        )
    except vol.Invalid as e:
        fail(f"{topic}: Home Assistant's device discovery schema refuses it: {e}")
    device_payload = discovery._parse_device_payload(None, payload, object_id, node_id)
    if not device_payload:
        fail(f"{topic}: Home Assistant does not read it as a device discovery message")
    checked = []
    for component_id, config in device_payload[discovery.CONF_COMPONENTS].items():
        config = dict(config)
        platform = config.pop("platform")
        component = MQTTDiscoveryPayload(config)
        component["device"] = device_payload["device"]
        component["origin"] = device_payload.get("origin")
        discovery._merge_common_device_options(component, device_payload)
        validated = check_component(f"{topic} component {component_id}", platform, component)
        print(f"ok {platform} {component_id}")
        checked.append((platform, component_id, validated))
    return checked


def _expanded(payload):
    discovery._replace_all_abbreviations(payload)
    return payload


def check_entity_topic(topic, payload):
    if payload == "":
        print(f"ok removal {topic}")
        return
    p = MQTTDiscoveryPayload(json.loads(payload))
    if not discovery._async_process_discovery_migration(p):
        fail(f"{topic}: a per-entity config is still sent: {payload}")
    print(f"ok migration {topic}")


def render(hass, components, samples):
    """Each component's value_template on each sample of its state topic, through Home
    Assistant's MQTT template class, `this` being the entity's state in a real state machine."""
    from homeassistant.components.mqtt.models import MqttValueTemplate
    from homeassistant.helpers.template import Template

    rendered = 0
    for platform, component_id, config in components:
        tpl = config.get("value_template")
        if tpl is None:
            continue
        entity = _Entity(f"{platform}.{component_id.replace('-', '_')}", config.get("name"))
        hass.states.async_set(entity.entity_id, "unknown")
        source = tpl.template if isinstance(tpl, Template) else tpl
        value_template = MqttValueTemplate(Template(source, hass), entity=entity)
        for sample in samples:
            if sample["state_topic"] != config.get("state_topic"):
                continue
            value = value_template.async_render_with_possible_json_value(sample["payload"])
            print(f"rendered {component_id} {sample['payload'][:50]!r} -> {value!r}")
            hass.states.async_set(entity.entity_id, str(value))
            rendered += 1
    return rendered


class _Entity:
    """The parts of an MQTT entity its template sees (`entity_id`, `name`, `this`)."""

    def __init__(self, entity_id, name):
        self.entity_id = entity_id
        self.name = name


async def amain():
    from homeassistant.core import HomeAssistant

    logging.basicConfig(level=logging.WARNING)
    with tempfile.TemporaryDirectory() as config_dir:
        # Template options are validated against a running instance, as in Home Assistant.
        hass = HomeAssistant(config_dir)
        try:
            check(hass)
        finally:
            await hass.async_stop(force=True)


def check(hass):
    ap = argparse.ArgumentParser()
    ap.add_argument("prefix")
    ap.add_argument("--render")
    args = ap.parse_args()
    components = []
    seen = 0
    for line in sys.stdin:
        if not line.strip():
            continue
        msg = json.loads(line)
        topic, payload = msg["topic"], msg["payload"]
        rest = topic[len(args.prefix) + 1 :] if topic.startswith(args.prefix + "/") else None
        if rest is None or rest == "status":
            continue
        seen += 1
        if rest.startswith("device/"):
            if not msg.get("retain", True):
                fail(f"{topic}: the device message is not retained")
            components += check_device(args.prefix, topic, payload)
        else:
            check_entity_topic(topic, payload)
    if seen == 0:
        fail("no discovery message read")
    if args.render:
        with open(args.render) as f:
            samples = [json.loads(l) for l in f if l.strip()]
        n = render(hass, components, samples)
        if n == 0:
            fail("no template rendered")
    print(f"ok {len(components)} components")


if __name__ == "__main__":
    # Home Assistant validates templates only inside its event loop.
    asyncio.run(amain())
