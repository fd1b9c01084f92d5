#!/usr/bin/env python3
"""Classifier throughput and memory: landfall (candle) beside transformers+peft, in one run.

At bert-base-chinese's shape (12 layers, hidden 768, vocab 21128; random weights, since real ones
cannot be fetched here) with a LoRA adapter (r=8, alpha=32, query/value, 3 labels), it measures
texts/s at batch 1 and 16 with 64-token texts, and peak RSS, for PyTorch fp32 and landfall at
fp32, q8_0 and q4k, each in its own process so peak RSS is its own. Same thread count for both.

    python benches/classifier_vs_pytorch.py --landfall target/release/landfall [--threads 2]

Needs a venv with torch, transformers, peft (see tests/fixtures/README.md).
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

FILLER = "这个产品非常好用，质量也不错，物流很快，包装完好，客服态度热情，下次还会再来购买。"


def make_model(out_dir):
    """A random-weights base at bert-base-chinese's shape and a LoRA adapter on it."""
    import torch
    from peft import LoraConfig, TaskType, get_peft_model
    from transformers import BertConfig, BertForPreTraining, BertForSequenceClassification, BertTokenizerFast

    base_dir = os.path.join(out_dir, "base")
    adapter_dir = os.path.join(out_dir, "adapter")
    if os.path.exists(os.path.join(adapter_dir, "adapter_model.safetensors")):
        return base_dir, adapter_dir
    os.makedirs(base_dir, exist_ok=True)
    torch.manual_seed(0)
    specials = ["[PAD]"] + [f"[unused{i}]" for i in range(1, 100)] + ["[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    chars = list(dict.fromkeys(FILLER))
    cjk = (chr(c) for c in range(0x4E00, 0x9FFF))
    vocab = specials + chars
    seen = set(vocab)
    for ch in cjk:
        if len(vocab) >= 21128:
            break
        if ch not in seen:
            vocab.append(ch)
            seen.add(ch)
    with open(os.path.join(base_dir, "vocab.txt"), "w", encoding="utf-8") as f:
        f.write("\n".join(vocab) + "\n")
    tok = BertTokenizerFast(os.path.join(base_dir, "vocab.txt"), do_lower_case=False, model_max_length=512)
    tok.save_pretrained(base_dir)
    config = BertConfig(vocab_size=21128, hidden_size=768, num_hidden_layers=12, num_attention_heads=12,
                        intermediate_size=3072, max_position_embeddings=512)
    BertForPreTraining(config).save_pretrained(base_dir)
    model = BertForSequenceClassification.from_pretrained(base_dir, num_labels=3)
    lora = LoraConfig(task_type=TaskType.SEQ_CLS, r=8, lora_alpha=32, target_modules=["query", "value"],
                      init_lora_weights=False)
    get_peft_model(model, lora).save_pretrained(adapter_dir)
    return base_dir, adapter_dir


def pytorch_worker(base_dir, adapter_dir, threads, seconds, seq_len, batches):
    """Runs in its own process; prints one JSON line per batch size."""
    import torch
    from peft import PeftModel
    from transformers import AutoTokenizer, BertForSequenceClassification

    torch.set_num_threads(threads)
    tok = AutoTokenizer.from_pretrained(base_dir)
    model = BertForSequenceClassification.from_pretrained(base_dir, num_labels=3)
    model = PeftModel.from_pretrained(model, adapter_dir).eval()
    text = FILLER * (seq_len // 8 + 4)
    for batch in batches:
        enc = tok([text] * batch, truncation=True, max_length=seq_len, padding=True, return_tensors="pt")
        with torch.no_grad():
            model(**enc)
            done, start = 0, time.perf_counter()
            while time.perf_counter() - start < seconds:
                model(**enc)
                done += batch
        elapsed = time.perf_counter() - start
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(json.dumps({"impl": "pytorch", "quant": "none", "batch": batch, "seq_len": seq_len,
                          "texts_per_s": done / elapsed, "peak_rss_mib": peak}), flush=True)


MAX_OTHER_CORES = quiet.DEFAULT_MAX_OTHER_CORES


def run_lines(cmd, env):
    proc, others = quiet.run_quiet(cmd, env, MAX_OTHER_CORES)
    if proc.returncode != 0:
        sys.exit(f"{cmd[0]} failed ({proc.returncode}): {proc.stderr.strip()[-2000:]}")
    print(f"# {os.path.basename(cmd[0])}: other processes used {others:.2f} cores meanwhile", file=sys.stderr)
    return [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--landfall", required=True, help="path to a release build of landfall")
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--seq-len", type=int, default=64)
    ap.add_argument("--batches", default="1,16")
    ap.add_argument("--work-dir", default="/tmp/landfall-bench/bert-base-chinese-shape")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--max-load", type=float, default=quiet.DEFAULT_MAX_LOAD,
                    help="start only once the 1-minute load average is at most this")
    ap.add_argument("--max-other-cores", type=float, default=quiet.DEFAULT_MAX_OTHER_CORES,
                    help="refuse figures taken while other processes used more CPU than this")
    args = ap.parse_args()
    batches = [int(b) for b in args.batches.split(",")]
    base_dir, adapter_dir = make_model(args.work_dir)
    if args.worker:
        pytorch_worker(base_dir, adapter_dir, args.threads, args.seconds, args.seq_len, batches)
        return
    global MAX_OTHER_CORES
    MAX_OTHER_CORES = args.max_other_cores
    try:
        report(args, batches)
    except quiet.Busy as e:
        sys.exit(f"not reported: {e}")


def report(args, batches):
    base_dir, adapter_dir = make_model(args.work_dir)
    print(f"# load average {quiet.wait_until_quiet(args.max_load):.2f}", file=sys.stderr)
    env = dict(os.environ, RAYON_NUM_THREADS=str(args.threads), OMP_NUM_THREADS=str(args.threads))
    rows = run_lines([sys.executable, __file__, "--worker", "--landfall", args.landfall, "--threads", str(args.threads),
                      "--seconds", str(args.seconds), "--seq-len", str(args.seq_len), "--batches", args.batches,
                      "--work-dir", args.work_dir], env)
    for quant in ["none", "q8_0", "q4k"]:
        rows += run_lines([args.landfall, "bench", "classify", "--base", base_dir, "--adapter", adapter_dir,
                           "--device", "cpu", "--quant", quant, "--batch-sizes", args.batches,
                           "--seq-len", str(args.seq_len), "--seconds", str(args.seconds)], env)
    ref = {r["batch"]: r for r in rows if r["impl"] == "pytorch"}
    print(f"\nbert-base-chinese shape, LoRA r=8 q/v, {args.seq_len} tokens, {args.threads} threads\n")
    print("| implementation | batch | texts/s | × PyTorch | peak RSS MiB | × PyTorch |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for r in rows:
        p = ref[r["batch"]]
        name = "PyTorch fp32" if r["impl"] == "pytorch" else f"landfall {'fp32' if r['quant'] == 'none' else r['quant']}"
        print(f"| {name} | {r['batch']} | {r['texts_per_s']:.1f} | {r['texts_per_s'] / p['texts_per_s']:.2f} "
              f"| {r['peak_rss_mib']:.0f} | {r['peak_rss_mib'] / p['peak_rss_mib']:.2f} |")


if __name__ == "__main__":
    main()
