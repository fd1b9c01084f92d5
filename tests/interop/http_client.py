"""The HTTP API as its clients call it, for tests/http_api.rs.

`seed` mode makes the FastAPI service's three calls the way its own client code makes them
(`requests` with a multipart `file` and query parameters), landfall's `/v1/...` calls, and the bad
inputs; `auth` mode checks the bearer token. Each call prints one JSON line:
`{"name", "status", "retry_after", "content_type", "body"}` (`body` parsed when JSON). `/metrics`
is parsed with `prometheus_client`'s own text-format parser, and its samples printed as
`{"name": "metrics_<tag>", "samples": {"<name>{k=v,...}": value}}`.

usage: http_client.py seed BASE_URL IMAGES_DIR TEXT1 TEXT2
       http_client.py auth BASE_URL TOKEN
"""

import base64
import json
import struct
import sys
import zlib

import requests
from prometheus_client.parser import text_string_to_metric_families


def show(name, r):
    try:
        body = r.json()
    except ValueError:
        body = r.text
    print(json.dumps({
        "name": name,
        "status": r.status_code,
        "retry_after": r.headers.get("Retry-After"),
        "content_type": r.headers.get("Content-Type"),
        "body": body,
    }, ensure_ascii=False), flush=True)


def metrics(base, tag, **kw):
    r = requests.get(f"{base}/metrics", timeout=30, **kw)
    r.raise_for_status()
    samples = {}
    for family in text_string_to_metric_families(r.text):
        for s in family.samples:
            labels = ",".join(f"{k}={v}" for k, v in sorted(s.labels.items()))
            samples[f"{s.name}{{{labels}}}"] = s.value
    print(json.dumps({"name": f"metrics_{tag}", "content_type": r.headers.get("Content-Type"),
                      "samples": samples}), flush=True)


def png_header(width, height):
    """A PNG whose header claims width x height, with a few bytes of pixels to back it."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\0" * 64)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def seed(base, images, text1, text2):
    square = open(f"{images}/square32.png", "rb").read()
    gray = open(f"{images}/gray40x30.png", "rb").read()
    metrics(base, "before")
    # The FastAPI service's calls, as its client makes them.
    show("seed_health", requests.get(f"{base}/health", timeout=30))
    show("seed_caption", requests.post(
        f"{base}/image-caption", files={"file": ("square32.png", square, "image/png")},
        params={"prompt": "a photo of"}, timeout=60))
    show("seed_caption_default", requests.post(
        f"{base}/image-caption", files={"file": ("square32.png", square, "image/png")}, timeout=60))
    show("seed_caption_form_prompt", requests.post(
        f"{base}/image-caption", files={"file": ("square32.png", square, "image/png")},
        data={"prompt": "a photo of"}, timeout=60))
    show("seed_vqa", requests.post(
        f"{base}/vqa", files={"file": ("gray.png", gray, "image/png")},
        params={"question": "what is this?"}, timeout=60))
    # landfall's own.
    show("v1_health", requests.get(f"{base}/v1/health", timeout=30))
    show("v1_classify", requests.post(f"{base}/v1/classify", json={"id": "h1", "text": text1}, timeout=30))
    show("v1_classify_big_id", requests.post(
        f"{base}/v1/classify", data='{"id": 18446744073709551616, "text": "x"}',
        headers={"Content-Type": "application/json"}, timeout=30))
    show("v1_classify_texts", requests.post(f"{base}/v1/classify", json={"texts": [text1, text2]}, timeout=30))
    show("v1_vqa_choices", requests.post(f"{base}/v1/vqa", json={
        "id": "q2", "question": "is there a cat?", "image_b64": base64.b64encode(gray).decode(),
        "choices": ["yes", "no"], "template": "vqa"}, timeout=60))
    # Bad inputs.
    show("bad_not_image", requests.post(
        f"{base}/image-caption", files={"file": ("notes.txt", b"hello, not an image", "text/plain")}, timeout=30))
    show("bad_huge_header", requests.post(
        f"{base}/image-caption", files={"file": ("huge.png", png_header(20000, 20000), "image/png")}, timeout=30))
    show("bad_empty_file", requests.post(
        f"{base}/image-caption", files={"file": ("empty.png", b"", "image/png")}, timeout=30))
    show("bad_missing_file", requests.post(f"{base}/image-caption", data={"prompt": "x"}, timeout=30))
    show("bad_missing_question", requests.post(
        f"{base}/vqa", files={"file": ("square32.png", square, "image/png")}, timeout=30))
    show("bad_oversized_upload", requests.post(
        f"{base}/image-caption", files={"file": ("big.png", square + b"\0" * 100_000, "image/png")}, timeout=30))
    show("bad_oversized_json", requests.post(
        f"{base}/v1/classify", json={"text": "x" * 100_000}, timeout=30))
    show("bad_json", requests.post(
        f"{base}/v1/classify", data="{not json", headers={"Content-Type": "application/json"}, timeout=30))
    show("bad_unknown_classifier", requests.post(
        f"{base}/v1/classify", json={"text": "x", "classifier": "nope"}, timeout=30))
    show("bad_route", requests.get(f"{base}/nowhere", timeout=30))
    show("bad_method", requests.get(f"{base}/vqa", timeout=30))
    metrics(base, "after")


def auth(base, token):
    show("no_token", requests.get(f"{base}/v1/health", timeout=30))
    show("wrong_token", requests.get(f"{base}/v1/health", headers={"Authorization": "Bearer nope"}, timeout=30))
    good = {"Authorization": f"Bearer {token}"}
    show("right_token", requests.get(f"{base}/v1/health", headers=good, timeout=30))
    show("right_token_classify", requests.post(
        f"{base}/v1/classify", json={"text": "x"}, headers=good, timeout=30))
    show("health_degraded", requests.get(f"{base}/health", headers=good, timeout=30))
    # More texts than the queue holds at once: the rest are refused, 503 with Retry-After.
    show("full_queue", requests.post(
        f"{base}/v1/classify", json={"texts": ["x"] * 256}, headers=good, timeout=60))
    metrics(base, "auth", headers=good)


if __name__ == "__main__":
    mode, base = sys.argv[1], sys.argv[2].rstrip("/")
    if mode == "seed":
        seed(base, *sys.argv[3:6])
    elif mode == "auth":
        auth(base, sys.argv[3])
    else:
        sys.exit(f"unknown mode {mode}")
