#!/usr/bin/env python3
"""Builds a BERT-base-shaped encoder (12 layers, hidden 768, 12 heads of 64,
intermediate 3072, batch 1, seq 128) the way exporters write it, with random
fp32 weights from a fixed seed (~85M params, ~340 MB as external data).

Every layer is spelled out in primitive ops, as torch.onnx / HF exports do:
MatMul + Add (bias) for Q/K/V/output/FFN, Reshape + Transpose into heads
(K transposed straight to [B,H,D,S]), MatMul QK^T, Div by sqrt(64), Add the
additive attention mask, Softmax, MatMul V, Transpose + Reshape back, residual
Add, LayerNorm decomposed (ReduceMean, Sub, Pow 2, ReduceMean, Add eps, Sqrt,
Div, Mul, Add) and GELU decomposed (Div sqrt2, Erf, Add 1, Mul, Mul 0.5).
Scalar constants are separate initializers per use, as exporters emit them,
so common-subexpression passes have duplicates to find.

Inputs: hidden_states f32[1,128,768] (embeddings skipped) and attention_mask
f32[1,1,1,128] (0 = attend, -10000 = masked; the fed one masks the last 16
positions). With --mask const the mask is a folded initializer instead of an
input. Output: last_hidden_state f32[1,128,768].

Usage: python bert_base.py [--layers N] [--seq S] [--mask input|const] [OUT_DIR]
"""
import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import Builder, default_out, save  # noqa: E402

HIDDEN, HEADS, FFN = 768, 12, 3072
HEAD_DIM = HIDDEN // HEADS
LN_EPS = 1e-12
INIT_STD = 0.02  # BERT's initializer_range


class Bert(Builder):
    def __init__(self, seed, seq):
        super().__init__(seed)
        self.seq = seq

    def linear(self, x, fan_in, fan_out, prefix):
        w = self.normal((fan_in, fan_out), INIT_STD)
        b = self.normal((fan_out,), INIT_STD)
        y = self.node("MatMul", [x, self.const(prefix + "_weight", w)])
        return self.node("Add", [y, self.const(prefix + "_bias", b)])

    def layer_norm(self, x, prefix):
        mean = self.node("ReduceMean", [x], axes=[-1], keepdims=1)
        d = self.node("Sub", [x, mean])
        sq = self.node("Pow", [d, self.scalar("two", 2.0)])
        var = self.node("ReduceMean", [sq], axes=[-1], keepdims=1)
        std = self.node("Sqrt", [self.node("Add", [var, self.scalar("eps", LN_EPS)])])
        n = self.node("Div", [d, std])
        gamma = self.rng.uniform(0.8, 1.2, HIDDEN).astype(np.float32)
        beta = self.normal((HIDDEN,), INIT_STD)
        n = self.node("Mul", [n, self.const(prefix + "_gamma", gamma)])
        return self.node("Add", [n, self.const(prefix + "_beta", beta)])

    def gelu(self, x):
        e = self.node("Erf", [self.node("Div", [x, self.scalar("sqrt2", np.sqrt(2.0))])])
        one_plus = self.node("Add", [e, self.scalar("one", 1.0)])
        return self.node("Mul", [self.node("Mul", [x, one_plus]), self.scalar("half", 0.5)])

    def heads(self, x, perm):
        split = self.ints("heads_shape", [1, self.seq, HEADS, HEAD_DIM])
        return self.node("Transpose", [self.node("Reshape", [x, split])], perm=perm)

    def layer(self, x, mask, i):
        p = f"layer{i}"
        q = self.heads(self.linear(x, HIDDEN, HIDDEN, p + "_query"), [0, 2, 1, 3])  # [B,H,S,D]
        k = self.heads(self.linear(x, HIDDEN, HIDDEN, p + "_key"), [0, 2, 3, 1])  # [B,H,D,S]
        v = self.heads(self.linear(x, HIDDEN, HIDDEN, p + "_value"), [0, 2, 1, 3])
        scores = self.node("MatMul", [q, k])
        scores = self.node("Div", [scores, self.scalar("sqrt_head_dim", np.sqrt(HEAD_DIM))])
        scores = self.node("Add", [scores, mask])
        probs = self.node("Softmax", [scores], axis=-1)
        ctx = self.node("Transpose", [self.node("MatMul", [probs, v])], perm=[0, 2, 1, 3])
        ctx = self.node("Reshape", [ctx, self.ints("merge_shape", [1, self.seq, HIDDEN])])
        attn = self.linear(ctx, HIDDEN, HIDDEN, p + "_attn_out")
        x = self.layer_norm(self.node("Add", [attn, x]), p + "_attn_ln")
        h = self.gelu(self.linear(x, HIDDEN, FFN, p + "_intermediate"))
        h = self.linear(h, FFN, HIDDEN, p + "_output")
        return self.layer_norm(self.node("Add", [h, x]), p + "_out_ln")


def make_mask(seq):
    m = np.zeros((1, 1, 1, seq), np.float32)
    m[..., seq - seq // 8:] = -10000.0
    return m


def build(layers=12, seq=128, mask_mode="input", seed=0):
    b = Bert(seed, seq)
    feeds = {"hidden_states": np.random.default_rng(seed + 1)
             .standard_normal((1, seq, HIDDEN), dtype=np.float32)}
    inputs = [("hidden_states", [1, seq, HIDDEN])]
    if mask_mode == "input":
        mask = "attention_mask"
        inputs.append((mask, [1, 1, 1, seq]))
        feeds[mask] = make_mask(seq)
    else:
        mask = b.const("attention_mask", make_mask(seq))
    x = "hidden_states"
    for i in range(layers):
        x = b.layer(x, mask, i)
    b.nodes[-1].output[0] = "last_hidden_state"
    model = b.model("bert_base", inputs, [("last_hidden_state", [1, seq, HIDDEN])])
    return model, feeds


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--layers", type=int, default=12)
    p.add_argument("--seq", type=int, default=128)
    p.add_argument("--mask", choices=["input", "const"], default="input")
    p.add_argument("out_dir", nargs="?", default=default_out("bert_base"))
    args = p.parse_args()
    model, feeds = build(args.layers, args.seq, args.mask)
    save(args.out_dir, model, feeds,
         {"config": {"layers": args.layers, "seq": args.seq, "hidden": HIDDEN, "heads": HEADS,
                     "intermediate": FFN, "mask": args.mask}})


if __name__ == "__main__":
    main()
