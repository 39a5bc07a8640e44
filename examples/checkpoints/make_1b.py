#!/usr/bin/env python3
"""A Llama-shaped ~1.1B-parameter random checkpoint in bf16, for load/speed tests.

hidden 2048, 16 layers, 32 heads, 8 kv heads, intermediate 8192, vocab 32000,
untied lm_head: 1,104,218,112 parameters, 2.21 GB, written as two shards plus
model.safetensors.index.json, the way save_pretrained shards a large model.
Nothing here is a reference: the weights are noise, so only the shapes, names
and file layout are meant to be realistic. The output is not committed.

Each tensor is generated and written in chunks straight into its shard (the
safetensors header is computed first from the shapes), so memory stays at a
under 300 MB whatever the model size.

Usage: .venv/bin/python examples/checkpoints/make_1b.py [OUT_DIR]   (default .cache/llama-1b)
"""
import json
import os
import sys
import time

import numpy as np

HIDDEN, LAYERS, HEADS, KV_HEADS, INTER, VOCAB = 2048, 16, 32, 8, 8192, 32000
HEAD_DIM = HIDDEN // HEADS
SHARDS = 2
CHUNK = 1 << 24  # elements generated at a time
SEED = 1234
STD = 0.02


def config():
    return {
        "architectures": ["LlamaForCausalLM"],
        "attention_bias": False,
        "attention_dropout": 0.0,
        "bos_token_id": 1,
        "eos_token_id": 2,
        "head_dim": HEAD_DIM,
        "hidden_act": "silu",
        "hidden_size": HIDDEN,
        "initializer_range": 0.02,
        "intermediate_size": INTER,
        "max_position_embeddings": 4096,
        "mlp_bias": False,
        "model_type": "llama",
        "num_attention_heads": HEADS,
        "num_hidden_layers": LAYERS,
        "num_key_value_heads": KV_HEADS,
        "pretraining_tp": 1,
        "rms_norm_eps": 1e-05,
        "rope_scaling": None,
        "rope_theta": 10000.0,
        "tie_word_embeddings": False,
        "torch_dtype": "bfloat16",
        "transformers_version": "4.51.3",
        "use_cache": True,
        "vocab_size": VOCAB,
    }


def tensors():
    """(name, shape, is_norm) in the order LlamaForCausalLM's state_dict lists them."""
    out = [("model.embed_tokens.weight", (VOCAB, HIDDEN), False)]
    for i in range(LAYERS):
        p = f"model.layers.{i}."
        out += [
            (p + "self_attn.q_proj.weight", (HEADS * HEAD_DIM, HIDDEN), False),
            (p + "self_attn.k_proj.weight", (KV_HEADS * HEAD_DIM, HIDDEN), False),
            (p + "self_attn.v_proj.weight", (KV_HEADS * HEAD_DIM, HIDDEN), False),
            (p + "self_attn.o_proj.weight", (HIDDEN, HEADS * HEAD_DIM), False),
            (p + "mlp.gate_proj.weight", (INTER, HIDDEN), False),
            (p + "mlp.up_proj.weight", (INTER, HIDDEN), False),
            (p + "mlp.down_proj.weight", (HIDDEN, INTER), False),
            (p + "input_layernorm.weight", (HIDDEN,), True),
            (p + "post_attention_layernorm.weight", (HIDDEN,), True),
        ]
    out += [("model.norm.weight", (HIDDEN,), True), ("lm_head.weight", (VOCAB, HIDDEN), False)]
    return out


def numel(shape):
    n = 1
    for d in shape:
        n *= d
    return n


def split_shards(items):
    """Consecutive tensors, cut where the running size passes each 1/SHARDS."""
    total = sum(2 * numel(s) for _, s, _ in items)
    shards, cur, size = [], [], 0
    for it in items:
        cur.append(it)
        size += 2 * numel(it[1])
        if size >= total * (len(shards) + 1) / SHARDS and len(shards) < SHARDS - 1:
            shards.append(cur)
            cur = []
    shards.append(cur)
    return shards, total


def header_bytes(items):
    header, off = {"__metadata__": {"format": "pt"}}, 0
    for name, shape, _ in items:
        n = 2 * numel(shape)
        header[name] = {"dtype": "BF16", "shape": list(shape), "data_offsets": [off, off + n]}
        off += n
    raw = json.dumps(header, separators=(",", ":")).encode()
    # safetensors pads the header with spaces so the data starts 8-byte aligned.
    raw += b" " * (-len(raw) % 8)
    return len(raw).to_bytes(8, "little") + raw


def to_bf16_bits(x):
    """f32 -> bf16 bit patterns, round to nearest even (no NaNs in the input)."""
    u = x.view(np.uint32)
    u = u + (np.uint32(0x7FFF) + ((u >> np.uint32(16)) & np.uint32(1)))
    return (u >> np.uint32(16)).astype(np.uint16)


def write_tensor(f, rng, shape, is_norm):
    n = numel(shape)
    if is_norm:
        f.write(np.full(n, 0x3F80, dtype=np.uint16).tobytes())  # bf16 1.0
        return
    left = n
    while left:
        k = min(CHUNK, left)
        x = rng.standard_normal(k, dtype=np.float32)
        x *= np.float32(STD)
        f.write(to_bf16_bits(x).tobytes())
        left -= k


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(".cache", "llama-1b")
    os.makedirs(out, exist_ok=True)
    t0 = time.time()
    rng = np.random.default_rng(SEED)
    items = tensors()
    shards, total = split_shards(items)
    weight_map = {}
    for s, part in enumerate(shards):
        fname = f"model-{s + 1:05d}-of-{len(shards):05d}.safetensors"
        with open(os.path.join(out, fname), "wb") as f:
            f.write(header_bytes(part))
            for name, shape, is_norm in part:
                write_tensor(f, rng, shape, is_norm)
                weight_map[name] = fname
        print(f"{fname}: {len(part)} tensors, {os.path.getsize(os.path.join(out, fname)) / 1e9:.2f} GB "
              f"({time.time() - t0:.0f} s)")
    index = {"metadata": {"total_size": total}, "weight_map": dict(sorted(weight_map.items()))}
    with open(os.path.join(out, "model.safetensors.index.json"), "w") as f:
        f.write(json.dumps(index, indent=2) + "\n")
    with open(os.path.join(out, "config.json"), "w") as f:
        f.write(json.dumps(config(), indent=2, sort_keys=True) + "\n")
    params = sum(numel(s) for _, s, _ in items)
    print(f"wrote {out}: {params:,} parameters, {total / 1e9:.2f} GB of bf16 in {time.time() - t0:.0f} s")


if __name__ == "__main__":
    main()
