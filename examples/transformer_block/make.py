#!/usr/bin/env python3
"""Builds one transformer encoder block (fixed seed) from primitive ONNX ops and
records onnxruntime's output.

Input [1, 8, 32] (batch, seq, hidden), 4 heads of 8. Multi-head attention is
MatMul+Add projections, Reshape/Transpose into heads, QK^T / sqrt(d), Softmax,
times V, heads merged back, output projection and a residual Add. LayerNorm is
spelled out (ReduceMean, Sub, Pow, ReduceMean, Add eps, Sqrt, Div, Mul, Add) and
the FFN uses Gelu written with Erf. Opset 17, so ReduceMean takes `axes` as an
attribute (an input since opset 18): the importer has to rewrite it.
Writes model.onnx, input_0.pb, expected_0.pb into OUT_DIR (default: this folder).
Usage: python make.py [OUT_DIR]
"""
import os
import sys

import numpy as np
from onnx import TensorProto, helper, numpy_helper

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from _fixture import save  # noqa: E402

OPSET = 17
BATCH, SEQ, HIDDEN, HEADS, FFN = 1, 8, 32, 4, 64
HEAD_DIM = HIDDEN // HEADS


class Builder:
    def __init__(self, seed):
        self.rng = np.random.default_rng(seed)
        self.nodes = []
        self.inits = []
        self.count = 0

    def name(self, prefix):
        self.count += 1
        return f"{prefix}_{self.count}"

    def const(self, prefix, array):
        n = self.name(prefix)
        self.inits.append(numpy_helper.from_array(array, n))
        return n

    def scalar(self, prefix, v):
        return self.const(prefix, np.array(v, np.float32))

    def node(self, op, inputs, prefix=None, **attrs):
        out = self.name(prefix or op.lower())
        self.nodes.append(helper.make_node(op, inputs, [out], name=out + "_node", **attrs))
        return out

    def linear(self, x, fan_in, fan_out, prefix):
        w = (self.rng.standard_normal((fan_in, fan_out)) / np.sqrt(fan_in)).astype(np.float32)
        b = (self.rng.standard_normal(fan_out) * 0.1).astype(np.float32)
        y = self.node("MatMul", [x, self.const(prefix + "_w", w)])
        return self.node("Add", [y, self.const(prefix + "_b", b)])

    def layer_norm(self, x, prefix):
        mean = self.node("ReduceMean", [x], axes=[-1], keepdims=1)
        d = self.node("Sub", [x, mean])
        sq = self.node("Pow", [d, self.scalar("two", 2.0)])
        var = self.node("ReduceMean", [sq], axes=[-1], keepdims=1)
        std = self.node("Sqrt", [self.node("Add", [var, self.scalar("eps", 1e-5)])])
        n = self.node("Div", [d, std])
        gamma = self.rng.uniform(0.5, 1.5, HIDDEN).astype(np.float32)
        beta = (self.rng.standard_normal(HIDDEN) * 0.1).astype(np.float32)
        n = self.node("Mul", [n, self.const(prefix + "_gamma", gamma)])
        return self.node("Add", [n, self.const(prefix + "_beta", beta)])

    def gelu(self, x):
        e = self.node("Erf", [self.node("Div", [x, self.scalar("sqrt2", np.sqrt(2.0))])])
        one_plus = self.node("Add", [e, self.scalar("one", 1.0)])
        return self.node("Mul", [self.node("Mul", [x, one_plus]), self.scalar("half", 0.5)])

    def heads(self, x, perm):
        split = self.const("heads_shape", np.array([BATCH, SEQ, HEADS, HEAD_DIM], np.int64))
        return self.node("Transpose", [self.node("Reshape", [x, split])], perm=perm)


def build(seed=0):
    b = Builder(seed)
    x = "x"
    q = b.heads(b.linear(x, HIDDEN, HIDDEN, "q"), [0, 2, 1, 3])   # [B, H, S, D]
    kt = b.heads(b.linear(x, HIDDEN, HIDDEN, "k"), [0, 2, 3, 1])  # [B, H, D, S]
    v = b.heads(b.linear(x, HIDDEN, HIDDEN, "v"), [0, 2, 1, 3])   # [B, H, S, D]
    scores = b.node("MatMul", [q, kt])
    scores = b.node("Div", [scores, b.scalar("sqrt_d", np.sqrt(HEAD_DIM))])
    probs = b.node("Softmax", [scores], axis=-1)
    ctx = b.node("MatMul", [probs, v])
    ctx = b.node("Transpose", [ctx], perm=[0, 2, 1, 3])          # [B, S, H, D]
    merge = b.const("merge_shape", np.array([BATCH, SEQ, HIDDEN], np.int64))
    ctx = b.node("Reshape", [ctx, merge])
    attn = b.linear(ctx, HIDDEN, HIDDEN, "o")
    h = b.layer_norm(b.node("Add", [x, attn]), "ln1")
    f = b.linear(b.gelu(b.linear(h, HIDDEN, FFN, "ffn1")), FFN, HIDDEN, "ffn2")
    b.layer_norm(b.node("Add", [h, f]), "ln2")
    b.nodes[-1].output[0] = "y"
    graph = helper.make_graph(
        b.nodes,
        "transformer_block",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [BATCH, SEQ, HIDDEN])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [BATCH, SEQ, HIDDEN])],
        b.inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                              producer_name="smelt-examples")
    model.ir_version = 8
    xin = np.random.default_rng(seed + 1).standard_normal((BATCH, SEQ, HIDDEN)).astype(np.float32)
    return model, {"x": xin}


def main():
    out_dir = sys.argv[1] if len(sys.argv) > 1 else os.path.dirname(os.path.abspath(__file__))
    model, feeds = build()
    save(out_dir, model, feeds)


if __name__ == "__main__":
    main()
