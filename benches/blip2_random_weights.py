#!/usr/bin/env python3
"""Random weights at Salesforce/blip2-opt-2.7b's shape, for benches/blip2_vs_pytorch.py.

The real checkpoint cannot be fetched here, and speed and memory depend on the shape only, so this
writes a `save_pretrained`-layout directory (config.json, generation_config.json, sharded
model-*.safetensors + model.safetensors.index.json, tokenizer.json, tokenizer_config.json,
processor_config.json) with the real config and seeded random fp32 weights (~15.5 GB):

    /work/refvenv/bin/python benches/blip2_random_weights.py [--out DIR]

The model is built on the meta device (no memory), and each tensor is filled from its own seeded
generator and written shard by shard, so the whole float model is never in memory at once
(peak ~2.5 GB). The tensor names are the ones save_pretrained writes: the script first checks its
naming against a tiny model that save_pretrained really saves.

Init: transformers' defaults (normal 0.02 for linear/embedding weights, LayerNorm weight 1), plus
small noise on biases and LayerNorm parameters so that no tensor is constant; OPT's final LayerNorm
output times the tied 0.02-std embedding gives logits with a spread of about 1, not all equal.

The tokenizer: OPT's GPT-2 BPE cannot be downloaded, so a byte-level BPE is trained on a few
sentences (OPT conventions: <s>=0, <pad>=1, </s>=2 prepended to every text, <unk>=3), its vocab
padded with unreachable filler tokens up to the image token, and <image> added at 50265.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
import zlib
from pathlib import Path

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch  # noqa: E402
from safetensors.torch import save_file  # noqa: E402
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers  # noqa: E402
from transformers import (  # noqa: E402
    Blip2Config,
    Blip2ForConditionalGeneration,
    Blip2Processor,
    BlipImageProcessor,
    GenerationConfig,
    OPTConfig,
    PreTrainedTokenizerFast,
)

DEFAULT_OUT = "/var/cache/landfall/bench/blip2-opt-2.7b-random"
SEED = 20260
SHARD_BYTES = 2 * 1024**3
IMAGE_TOKEN = 50265
VOCAB = 50272

# Salesforce/blip2-opt-2.7b's config.json: the vision and Q-Former configs are transformers'
# defaults (EVA ViT-g/14 and the BERT-base Q-Former); OPT-2.7b's text config; 32 queries, the
# image token at 50265 (the Hub's current revision), EOS "\n" = 50118 as in the Hub's text_config.
VISION = dict(hidden_size=1408, intermediate_size=6144, num_hidden_layers=39, num_attention_heads=16,
              image_size=224, patch_size=14, qkv_bias=True, layer_norm_eps=1e-6, hidden_act="gelu")
QFORMER = dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072,
               cross_attention_frequency=2, encoder_hidden_size=1408, vocab_size=30522,
               max_position_embeddings=512, layer_norm_eps=1e-12)
TEXT = dict(vocab_size=VOCAB, hidden_size=2560, ffn_dim=10240, num_hidden_layers=32, num_attention_heads=32,
            max_position_embeddings=2048, word_embed_proj_dim=2560, do_layer_norm_before=True,
            activation_function="relu", bos_token_id=2, eos_token_id=50118, pad_token_id=1,
            enable_bias=True, tie_word_embeddings=True)

CORPUS = [
    "Question: what is in the picture? Answer: a cat sitting on a table",
    "Question: what color is the car? Answer: red",
    "a photo of a dog playing in the grass with a ball",
    "a man riding a bike down the street next to a bus",
    "two people standing on a beach at sunset",
    "a close up of a yellow flower in a garden",
    "a kitchen with a white refrigerator and a wooden table",
    "图片内容描述: 一只猫坐在桌子上",
]


def build_config() -> Blip2Config:
    return Blip2Config(vision_config=VISION, qformer_config=QFORMER, text_config=OPTConfig(**TEXT),
                       num_query_tokens=32, image_token_index=IMAGE_TOKEN)


def saved_shapes(config: Blip2Config) -> dict[str, tuple[torch.Size, torch.dtype]]:
    """Name → (shape, dtype) of every tensor save_pretrained writes for this config."""
    with torch.device("meta"):
        model = Blip2ForConditionalGeneration(config)
    state = model.state_dict()
    # The LM head is tied to the input embeddings; save_pretrained writes only the embeddings.
    tied = {k for k in state if k.endswith("lm_head.weight")} if config.text_config.tie_word_embeddings else set()
    return {k: (v.shape, v.dtype) for k, v in state.items() if k not in tied}


def check_naming() -> None:
    """save_pretrained's names for a tiny model of this structure == what saved_shapes predicts."""
    tiny = Blip2Config(
        vision_config=dict(VISION, hidden_size=16, intermediate_size=32, num_hidden_layers=2, num_attention_heads=2,
                           image_size=28),
        qformer_config=dict(QFORMER, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                            intermediate_size=32, encoder_hidden_size=16, vocab_size=64),
        text_config=OPTConfig(**dict(TEXT, vocab_size=64, hidden_size=16, ffn_dim=32, num_hidden_layers=2,
                                     num_attention_heads=2, max_position_embeddings=64, word_embed_proj_dim=16,
                                     eos_token_id=2)),
        num_query_tokens=4, image_token_index=60)
    with tempfile.TemporaryDirectory() as d:
        Blip2ForConditionalGeneration(tiny).save_pretrained(d)
        from safetensors import safe_open

        with safe_open(os.path.join(d, "model.safetensors"), "pt") as f:
            saved = set(f.keys())
    predicted = set(saved_shapes(tiny))
    if saved != predicted:
        sys.exit(f"tensor names differ from save_pretrained's: only saved {sorted(saved - predicted)[:5]}, "
                 f"only predicted {sorted(predicted - saved)[:5]}")


def fill(name: str, shape: torch.Size, dtype: torch.dtype) -> torch.Tensor:
    g = torch.Generator().manual_seed(SEED + zlib.crc32(name.encode()))
    t = torch.randn(shape, generator=g, dtype=torch.float32)
    if len(shape) >= 2 or name.endswith(("query_tokens", "class_embedding")):
        t.mul_(0.02)
    elif "norm" in name.lower() and name.endswith("weight"):
        t.mul_(0.02).add_(1.0)
    else:  # biases (linear and LayerNorm)
        t.mul_(0.02)
    return t.to(dtype)


def build_tokenizer() -> PreTrainedTokenizerFast:
    tok = Tokenizer(models.BPE(unk_token=None))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=1000, special_tokens=["<s>", "<pad>", "</s>", "<unk>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(CORPUS * 4, trainer)
    # Pad the vocab with tokens no merge produces, so ids reach the model's size as OPT's do.
    spec = json.loads(tok.to_str())
    vocab = spec["model"]["vocab"]
    n = len(vocab)
    for i in range(n, IMAGE_TOKEN):
        vocab[f"<filler{i}>"] = i
    tok = Tokenizer.from_str(json.dumps(spec))
    tok.post_processor = processors.TemplateProcessing(single="</s> $A", pair="</s> $A </s> $B",
                                                       special_tokens=[("</s>", 2)])
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="</s>", eos_token="</s>", unk_token="<unk>",
                                   pad_token="<pad>")
    fast.add_special_tokens({"additional_special_tokens": ["<image>"]})
    assert fast.convert_tokens_to_ids("<image>") == IMAGE_TOKEN, fast.convert_tokens_to_ids("<image>")
    return fast


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=DEFAULT_OUT)
    args = ap.parse_args()
    out = Path(args.out)
    index_path = out / "model.safetensors.index.json"
    if index_path.is_file():
        print(f"{out} already holds the weights; delete it to write them again")
        return
    start = time.time()
    check_naming()
    config = build_config()
    shapes = saved_shapes(config)
    out.mkdir(parents=True, exist_ok=True)

    # Shards in name order, each up to SHARD_BYTES (as save_pretrained's max_shard_size would).
    shards: list[list[str]] = [[]]
    size = 0
    for name in sorted(shapes):
        shape, dtype = shapes[name]
        nbytes = shape.numel() * torch.empty((), dtype=dtype).element_size()
        if shards[-1] and size + nbytes > SHARD_BYTES:
            shards.append([])
            size = 0
        shards[-1].append(name)
        size += nbytes
    weight_map, total = {}, 0
    for i, names in enumerate(shards, 1):
        file = f"model-{i:05d}-of-{len(shards):05d}.safetensors"
        tensors = {n: fill(n, *shapes[n]) for n in names}
        total += sum(t.numel() * t.element_size() for t in tensors.values())
        save_file(tensors, str(out / file), metadata={"format": "pt"})
        weight_map.update({n: file for n in names})
        print(f"{file}: {len(names)} tensors, {time.time() - start:.0f} s", flush=True)
        del tensors

    config.save_pretrained(out)
    GenerationConfig(bos_token_id=2, eos_token_id=50118, pad_token_id=1, max_new_tokens=20).save_pretrained(out)
    image_processor = BlipImageProcessor(size={"height": 224, "width": 224}, resample=3,
                                         image_mean=[0.48145466, 0.4578275, 0.40821073],
                                         image_std=[0.26862954, 0.26130258, 0.27577711])
    Blip2Processor(image_processor=image_processor, tokenizer=build_tokenizer(),
                   num_query_tokens=config.num_query_tokens).save_pretrained(out)
    # The index last: its presence marks a complete directory.
    index = {"metadata": {"total_size": total, "total_parameters": total // 4}, "weight_map": weight_map}
    index_path.write_text(json.dumps(index, indent=2, sort_keys=True) + "\n")
    print(f"wrote {total / 1e9:.2f} GB in {len(shards)} shards to {out} in {time.time() - start:.0f} s")


if __name__ == "__main__":
    main()
