#!/usr/bin/env python3
"""Builds a GPT-2-small-shaped decoder (12 layers, hidden 768, 12 heads of 64,
FFN 3072, pre-LayerNorm, causal self-attention, batch 1, seq 128) with random
fp32 weights from a fixed seed (~85M params, ~340 MB as external data).

Written as torch.onnx.export writes GPT-2 at opset 17: LayerNormalization
ops (eps 1e-5), one fused QKV projection (MatMul + Add to 3*768, then Split),
Reshape + Transpose into heads (K straight to [B,H,D,S]), MatMul QK^T, Div by
sqrt(64), Add a constant causal mask (0 on and below the diagonal, -10000
above), Softmax, MatMul V, Transpose + Reshape back, output projection,
residual Add; MLP with GPT-2's tanh-approximated GELU spelled out
(0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))); a final LayerNormalization.
Weights N(0, 0.02), the residual projections N(0, 0.02/sqrt(2*layers)) as in
GPT-2's init. Embeddings are skipped, as in bert_base.py.

Input: hidden_states f32[1,128,768]. Output: last_hidden_state f32[1,128,768].
SMELT_PATTERN_WEIGHTS=1 gives compressible weights (see _common.py).

Usage: python gpt2_small.py [--layers N] [--seq S] [OUT_DIR]
"""
import argparse
import os
import sys

import numpy as np
from onnx import helper

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import Builder, default_out, save  # noqa: E402

HIDDEN, HEADS, FFN = 768, 12, 3072
HEAD_DIM = HIDDEN // HEADS
LN_EPS = 1e-5
INIT_STD = 0.02  # GPT-2's initializer_range


class Gpt2(Builder):
    def __init__(self, seed, seq, layers):
        super().__init__(seed)
        self.seq = seq
        self.layers = layers

    def linear(self, x, fan_in, fan_out, prefix, std=INIT_STD):
        w = self.normal((fan_in, fan_out), std)
        b = self.normal((fan_out,), INIT_STD)
        y = self.node("MatMul", [x, self.const(prefix + "_weight", w)])
        return self.node("Add", [y, self.const(prefix + "_bias", b)])

    def layer_norm(self, x, prefix):
        gamma = self.rng.uniform(0.8, 1.2, HIDDEN).astype(np.float32)
        beta = self.normal((HIDDEN,), INIT_STD)
        return self.node("LayerNormalization",
                         [x, self.const(prefix + "_gamma", gamma), self.const(prefix + "_beta", beta)],
                         axis=-1, epsilon=LN_EPS)

    def gelu_tanh(self, x):
        cube = self.node("Pow", [x, self.scalar("three", 3.0)])
        inner = self.node("Add", [x, self.node("Mul", [cube, self.scalar("c", 0.044715)])])
        t = self.node("Tanh", [self.node("Mul", [inner, self.scalar("sqrt_2_over_pi", np.sqrt(2.0 / np.pi))])])
        one_plus = self.node("Add", [t, self.scalar("one", 1.0)])
        return self.node("Mul", [self.node("Mul", [x, one_plus]), self.scalar("half", 0.5)])

    def heads(self, x, perm):
        split = self.ints("heads_shape", [1, self.seq, HEADS, HEAD_DIM])
        return self.node("Transpose", [self.node("Reshape", [x, split])], perm=perm)

    def attention(self, x, mask, p):
        qkv = self.linear(x, HIDDEN, 3 * HIDDEN, p + "_c_attn")
        names = [self.name(p + s) for s in ("_q", "_k", "_v")]
        self.nodes.append(helper.make_node(
            "Split", [qkv, self.ints("split", [HIDDEN] * 3)], names, name=names[0] + "_split", axis=-1))
        q = self.heads(names[0], [0, 2, 1, 3])  # [B,H,S,D]
        k = self.heads(names[1], [0, 2, 3, 1])  # [B,H,D,S]
        v = self.heads(names[2], [0, 2, 1, 3])
        scores = self.node("MatMul", [q, k])
        scores = self.node("Div", [scores, self.scalar("sqrt_head_dim", np.sqrt(HEAD_DIM))])
        probs = self.node("Softmax", [self.node("Add", [scores, mask])], axis=-1)
        ctx = self.node("Transpose", [self.node("MatMul", [probs, v])], perm=[0, 2, 1, 3])
        ctx = self.node("Reshape", [ctx, self.ints("merge_shape", [1, self.seq, HIDDEN])])
        return self.linear(ctx, HIDDEN, HIDDEN, p + "_attn_c_proj", self.proj_std())

    def proj_std(self):
        # GPT-2 scales the projections into the residual stream by the depth.
        return INIT_STD / np.sqrt(2.0 * self.layers)

    def block(self, x, mask, i):
        p = f"h{i}"
        x = self.node("Add", [x, self.attention(self.layer_norm(x, p + "_ln_1"), mask, p)])
        h = self.gelu_tanh(self.linear(self.layer_norm(x, p + "_ln_2"), HIDDEN, FFN, p + "_mlp_c_fc"))
        return self.node("Add", [x, self.linear(h, FFN, HIDDEN, p + "_mlp_c_proj", self.proj_std())])


def causal_mask(seq):
    m = np.triu(np.full((seq, seq), -10000.0, np.float32), k=1)
    return m.reshape(1, 1, seq, seq)


def build(layers=12, seq=128, seed=0):
    b = Gpt2(seed, seq, layers)
    feeds = {"hidden_states": np.random.default_rng(seed + 1)
             .standard_normal((1, seq, HIDDEN), dtype=np.float32)}
    mask = b.const("causal_mask", causal_mask(seq))
    x = "hidden_states"
    for i in range(layers):
        x = b.block(x, mask, i)
    b.layer_norm(x, "ln_f")
    b.nodes[-1].output[0] = "last_hidden_state"
    model = b.model("gpt2_small", [("hidden_states", [1, seq, HIDDEN])],
                    [("last_hidden_state", [1, seq, HIDDEN])])
    return model, feeds


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--layers", type=int, default=12)
    p.add_argument("--seq", type=int, default=128)
    p.add_argument("out_dir", nargs="?", default=default_out("gpt2_small"))
    args = p.parse_args()
    model, feeds = build(args.layers, args.seq)
    save(args.out_dir, model, feeds,
         {"config": {"layers": args.layers, "seq": args.seq, "hidden": HIDDEN, "heads": HEADS,
                     "intermediate": FFN, "pattern_weights": os.environ.get("SMELT_PATTERN_WEIGHTS") == "1"}})


if __name__ == "__main__":
    main()
