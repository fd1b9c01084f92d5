#!/usr/bin/env python3
"""BLIP-2 speed, memory and first-step logits: landfall (candle) beside transformers, in one run.

At Salesforce/blip2-opt-2.7b's shape (random weights from benches/blip2_random_weights.py, since
the real ones cannot be fetched here), for one fixed synthetic 224x224 image and the prompt
"Question: what is in the picture? Answer:", it measures PyTorch fp32 (transformers, CPU, eval)
and `landfall bench caption` at --quant none, q8_0, q4k (and q4_0 with --quants), each in its own
process so that peak RSS is its own: load time, peak RSS, vision+Q-Former ms, prefill ms, decode
tokens/s over forced tokens (EOS suppressed), and compares the first-step logits by cosine
similarity. Every configuration runs --runs times; the best of each figure is kept.

    /work/refvenv/bin/python benches/blip2_random_weights.py
    cargo build --release
    /work/refvenv/bin/python benches/blip2_vs_pytorch.py --landfall $CARGO_TARGET_DIR/release/landfall

Both fp32 runs need ~16 GiB of free memory; --skip-pytorch / --quants narrow the run.
"""
import argparse
import json
import os
import resource
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import quiet  # noqa: E402

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

DEFAULT_MODEL = "/var/cache/landfall/bench/blip2-opt-2.7b-random"
PROMPT = "Question: what is in the picture? Answer:"


def synthetic_pixels(size):
    """The same pattern as landfall's `bench caption` (src/commands/bench_caption.rs)."""
    import numpy as np

    c, y, x = np.meshgrid(np.arange(3), np.arange(size), np.arange(size), indexing="ij")
    v = ((x * 7 + y * 13 + c * 29) % 256).astype(np.float32) / np.float32(127.5) - np.float32(1.0)
    return v[None].astype(np.float32)


def pytorch_worker(args):
    """Runs in its own process; prints one JSON line and writes the first-step logits."""
    import torch
    from transformers import AutoTokenizer, Blip2ForConditionalGeneration

    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    model = Blip2ForConditionalGeneration.from_pretrained(args.model, dtype=torch.float32).eval()
    load_s = time.perf_counter() - start
    tok = AutoTokenizer.from_pretrained(args.model)
    cfg = model.config
    size = cfg.vision_config.image_size
    pixels = torch.from_numpy(synthetic_pixels(size))
    # What Blip2Processor builds: num_query_tokens image tokens, then </s> + the prompt.
    ids = [cfg.image_token_index] * cfg.num_query_tokens + tok(PROMPT).input_ids
    input_ids = torch.tensor([ids])
    mask = torch.ones_like(input_ids)
    lm = model.language_model

    def best(f):
        times, out = [], None
        for _ in range(args.repeats):
            t = time.perf_counter()
            out = f()
            times.append((time.perf_counter() - t) * 1e3)
        return min(times), out

    with torch.inference_mode():
        vision_ms, features = best(lambda: model.get_image_features(pixel_values=pixels).pooler_output)
        # Four cameras' frames as one batch, as landfall's daemon runs frames due together.
        batch = pixels.repeat(CAMERAS, 1, 1, 1)
        vision_batch_ms, _ = best(lambda: model.get_image_features(pixel_values=batch).pooler_output)

        def prefill():
            embeds = lm.get_input_embeddings()(input_ids)
            embeds = embeds.masked_scatter((input_ids == cfg.image_token_index)[..., None], features)
            return lm(inputs_embeds=embeds, attention_mask=mask, use_cache=True, logits_to_keep=1).logits[0, -1]

        prefill_ms, logits = best(prefill)
        n = args.new_tokens

        def generate(tokens):
            gen = dict(max_new_tokens=tokens, min_new_tokens=tokens, do_sample=False, num_beams=1)
            return best(lambda: model.generate(input_ids=input_ids, attention_mask=mask,
                                               pixel_values=pixels, **gen))

        generate_ms, out = generate(n)
        first_ms, _ = generate(1)
    # Both generate calls run vision + prefill; n tokens take n - 1 decoding steps more than one
    # (the first token comes from prefill). Subtracting the separately timed vision and prefill
    # instead went negative when one of them ran slow.
    decode_ms = generate_ms - first_ms
    if decode_ms <= 0:
        sys.exit(f"PyTorch's {n}-token generate ({generate_ms:.0f} ms) was not slower than its 1-token "
                 f"one ({first_ms:.0f} ms): the machine was too noisy to time decoding")
    logits.float().numpy().astype("<f4").tofile(args.logits_out)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"impl": "pytorch", "quant": "none", "load_s": load_s, "peak_rss_mib": peak,
                      "weight_mib": sum(p.numel() * p.element_size() for p in model.parameters()) / 2**20,
                      "vision_qformer_ms": vision_ms, "prefill_ms": prefill_ms, "prompt_tokens": len(ids),
                      "vision_images_per_s_1_camera": 1e3 / vision_ms, "cameras": CAMERAS,
                      "vision_images_per_s_cameras": CAMERAS * 1e3 / vision_batch_ms,
                      "new_tokens": out.shape[1] - len(ids) if out.shape[1] > len(ids) else out.shape[1],
                      "decode_tokens_per_s": (n - 1) / (decode_ms / 1e3), "threads": args.threads}), flush=True)


MAX_OTHER_CORES = quiet.DEFAULT_MAX_OTHER_CORES
# Frames due together from this many cameras: images/s through vision+Q-Former at 1 and at this.
CAMERAS = 4


def run_line(cmd, env):
    try:
        proc, others = quiet.run_quiet(cmd, env, MAX_OTHER_CORES)
    except quiet.Busy as e:
        sys.exit(f"not reported: {e}")
    print(f"# other processes used {others:.2f} cores meanwhile", file=sys.stderr)
    if proc.returncode != 0:
        sys.exit(f"{cmd[0]} failed ({proc.returncode}): {proc.stderr.strip()[-2000:]}")
    lines = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    return lines[-1]


def best_of(rows):
    """Per figure, the best over runs (lowest time and memory, highest speed)."""
    out = dict(rows[0])
    for key in ("load_s", "peak_rss_mib", "vision_qformer_ms", "prefill_ms"):
        if key in out:
            out[key] = min(r[key] for r in rows)
    for key in ("decode_tokens_per_s", "bandwidth_gb_s", "decode_bound_tokens_per_s",
                "vision_images_per_s_1_camera", "vision_images_per_s_cameras"):
        if out.get(key) is not None:
            out[key] = max(r[key] for r in rows)
    if out.get("decode_bound_tokens_per_s"):
        out["decode_of_bound"] = out["decode_tokens_per_s"] / out["decode_bound_tokens_per_s"]
    return out


def free_gib():
    with open("/proc/meminfo") as f:
        info = {line.split(":")[0]: int(line.split()[1]) for line in f}
    return info["MemAvailable"] / 2**20


def cosine(a, b):
    import numpy as np

    a, b = a.astype(np.float64), b.astype(np.float64)
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--landfall", help="path to a release build of landfall")
    ap.add_argument("--model", default=DEFAULT_MODEL)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--new-tokens", type=int, default=16)
    ap.add_argument("--repeats", type=int, default=2, help="timed passes inside each process")
    ap.add_argument("--runs", type=int, default=2, help="processes per configuration")
    ap.add_argument("--quants", default="none,q8_0,q4k")
    ap.add_argument("--skip-pytorch", action="store_true")
    ap.add_argument("--reuse", action="store_true",
                    help="take configurations already measured in --work-dir from there (runs-*.json)")
    ap.add_argument("--fp32-gib", type=float, default=16.5, help="memory an fp32 run needs available to start")
    ap.add_argument("--work-dir", default="/var/cache/landfall/bench/results")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--logits-out", help=argparse.SUPPRESS)
    ap.add_argument("--max-load", type=float, default=quiet.DEFAULT_MAX_LOAD,
                    help="start only once the 1-minute load average is at most this")
    ap.add_argument("--max-other-cores", type=float, default=quiet.DEFAULT_MAX_OTHER_CORES,
                    help="refuse figures taken while other processes used more CPU than this")
    args = ap.parse_args()
    if args.worker:
        pytorch_worker(args)
        return
    global MAX_OTHER_CORES
    MAX_OTHER_CORES = args.max_other_cores
    try:
        print(f"# load average {quiet.wait_until_quiet(args.max_load):.2f}", file=sys.stderr)
    except quiet.Busy as e:
        sys.exit(f"not reported: {e}")
    import numpy as np

    os.makedirs(args.work_dir, exist_ok=True)
    env = dict(os.environ, RAYON_NUM_THREADS=str(args.threads), OMP_NUM_THREADS=str(args.threads))
    results, logits = {}, {}
    configs = ([] if args.skip_pytorch else [("pytorch", "none")]) + [
        ("landfall", q) for q in args.quants.split(",") if q]
    for impl, quant in configs:
        name = f"{impl}-{quant}"
        path = os.path.join(args.work_dir, f"logits-{name}.f32")
        saved = os.path.join(args.work_dir, f"runs-{name}.json")
        if args.reuse and os.path.exists(saved) and os.path.exists(path):
            with open(saved) as f:
                rows = json.load(f)
            print(f"# {name}: reusing {len(rows)} runs from {saved}", file=sys.stderr)
        else:
            rows = measure(impl, quant, name, path, args, env)
            with open(saved, "w") as f:
                json.dump(rows, f, indent=2)
        if not rows:
            continue
        results[name] = best_of(rows)
        logits[name] = np.fromfile(path, dtype="<f4")
    with open(os.path.join(args.work_dir, "results.json"), "w") as f:
        json.dump(results, f, indent=2)
    print_table(results, logits, args)


def measure(impl, quant, name, path, args, env):
    """--runs processes of one configuration, or fewer where memory runs short."""
    rows = []
    for run in range(args.runs):
        load = os.getloadavg()
        need = args.fp32_gib if quant == "none" else 4.0
        if free_gib() < need:
            # Other work on the machine: a model that does not fit would push it into the OOM killer.
            print(f"# {name}: skipped, {free_gib():.1f} GiB available < {need} GiB needed", file=sys.stderr)
            break
        print(f"# {name} run {run + 1}: {free_gib():.1f} GiB available, load {load[0]:.2f}",
              file=sys.stderr, flush=True)
        if impl == "pytorch":
            cmd = [sys.executable, __file__, "--worker", "--model", args.model, "--threads", str(args.threads),
                   "--new-tokens", str(args.new_tokens), "--repeats", str(args.repeats), "--logits-out", path]
        else:
            cmd = [args.landfall, "bench", "caption", "--model", args.model, "--device", "cpu", "--quant", quant,
                   "--new-tokens", str(args.new_tokens), "--repeats", str(args.repeats), "--logits-out", path,
                   "--prompt", PROMPT, "--cameras", str(CAMERAS)]
        row = run_line(cmd, env)
        row["load_avg"] = load[0]
        print(json.dumps(row), flush=True)
        rows.append(row)
    return rows


def print_table(results, logits, args):
    ref = results.get("pytorch-none")
    # One bandwidth for the machine: the best any run measured (a busy machine only lowers it).
    bw = max((r.get("bandwidth_gb_s") or 0 for r in results.values()), default=0)
    for r in results.values():
        if bw and r.get("decoder_mib_per_token"):
            r["decode_bound_tokens_per_s"] = bw * 1e9 / (r["decoder_mib_per_token"] * 2**20)
            r["decode_of_bound"] = r["decode_tokens_per_s"] / r["decode_bound_tokens_per_s"]
    print(f"\nblip2-opt-2.7b shape (random weights), 224x224 image, {results[next(iter(results))]['prompt_tokens']}"
          f" prompt tokens, {args.new_tokens} forced new tokens, {args.threads} threads\n")
    print("| implementation | load s | peak RSS GiB | × PyTorch | vision+Q-Former ms | prefill ms | decode tok/s "
          f"| × PyTorch | bound tok/s | of bound | cos vs landfall fp32 | cos vs PyTorch fp32 "
          f"| images/s 1 camera | images/s {CAMERAS} cameras |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for name, r in results.items():
        def ratio(key):
            return f"{r[key] / ref[key]:.2f}" if ref else "–"

        def cos(other):
            return f"{cosine(logits[name], logits[other]):.5f}" if other in logits and other != name else "–"

        bound = r.get("decode_bound_tokens_per_s")
        bound_s = f"{bound:.2f}" if bound else "–"
        of_bound = f"{100 * r['decode_of_bound']:.0f}%" if bound else "–"
        print(f"| {name} | {r['load_s']:.1f} | {r['peak_rss_mib'] / 1024:.2f} | {ratio('peak_rss_mib')} "
              f"| {r['vision_qformer_ms']:.0f} | {r['prefill_ms']:.0f} | {r['decode_tokens_per_s']:.2f} "
              f"| {ratio('decode_tokens_per_s')} | {bound_s} | {of_bound} | {cos('landfall-none')} "
              f"| {cos('pytorch-none')} | {r.get('vision_images_per_s_1_camera', 0):.2f} "
              f"| {r.get('vision_images_per_s_cameras') or 0:.2f} |")
    if bw:
        print(f"\nmeasured read bandwidth: {bw:.1f} GB/s (best of all runs); bound = bandwidth / decoder bytes per token")
    if "pytorch-none" in logits and "landfall-none" in logits:
        diff = abs(logits["pytorch-none"] - logits["landfall-none"]).max()
        print(f"landfall fp32 vs PyTorch fp32 first-step logits: max |diff| {diff:.2e}")


if __name__ == "__main__":
    main()
