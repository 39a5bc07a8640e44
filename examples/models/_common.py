"""Shared by the benchmark-model scripts: a small graph builder and `save`,
which writes a model with its weights as external data, validates it with
onnx.checker, runs it once with onnxruntime and records what it is in info.json.

Layout written into OUT_DIR:
    model.onnx        graph only (small); weights live in weights.bin beside it
    weights.bin       every initializer over 1 KiB, as external data
    input_<i>.pb      one input per graph input, in graph-input order
    expected_<i>.pb   onnxruntime's outputs (unfused: ORT_DISABLE_ALL)
    info.json         params, node count, op histogram, input/output shapes, timings
"""
import collections
import json
import os
import time

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

OPSET = 17
WEIGHTS_FILE = "weights.bin"
BN_EPS = 1e-3
# Opt-in (SMELT_PATTERN_WEIGHTS=1): weights drawn from a short periodic
# sequence instead of the generator, so that weights.bin (and artifacts made
# from it) gzip by orders of magnitude; used for GPU timing bundles, which
# must travel in tens of MiB and whose timing does not depend on the values.
PATTERN_PERIOD = 61


class Builder:
    """Appends nodes and initializers with unique, readable names."""

    def __init__(self, seed, fold_bn=False):
        self.rng = np.random.default_rng(seed)
        # fold_bn: emit Conv with bias instead of Conv + BatchNormalization,
        # as torch.onnx.export does in eval mode with constant folding.
        self.fold_bn = fold_bn
        self.nodes = []
        self.inits = []
        self.count = 0
        self.pattern = os.environ.get("SMELT_PATTERN_WEIGHTS") == "1"
        self.pattern_draws = 0

    def name(self, prefix):
        self.count += 1
        return f"{prefix}_{self.count}"

    def const(self, prefix, array):
        n = self.name(prefix)
        self.inits.append(numpy_helper.from_array(np.ascontiguousarray(array), n))
        return n

    def scalar(self, prefix, v):
        return self.const(prefix, np.array(v, np.float32))

    def ints(self, prefix, values):
        return self.const(prefix, np.array(values, np.int64))

    def node(self, op, inputs, prefix=None, **attrs):
        out = self.name(prefix or op.lower())
        self.nodes.append(helper.make_node(op, inputs, [out], name=out + "_node", **attrs))
        return out

    def normal(self, shape, std):
        if self.pattern:
            return self.pattern_normal(shape, std)
        # float32 generation directly: BERT's 85M weights in float64 would
        # double the peak memory for nothing.
        return (self.rng.standard_normal(shape, dtype=np.float32) * np.float32(std)).astype(np.float32)

    def pattern_normal(self, shape, std):
        """N(0, std)-like values repeating with a short period. Each call gets
        its own phase and a slightly different scale: identical weight tensors
        would let an optimizer merge layers that real models keep apart."""
        k = self.pattern_draws
        self.pattern_draws += 1
        # A fixed base sequence, independent of the builder's generator, so
        # the default (non-pattern) draws are unaffected by this option.
        base = np.random.default_rng(12345).standard_normal(PATTERN_PERIOD).astype(np.float32)
        n = int(np.prod(shape, dtype=np.int64))
        idx = (np.arange(n, dtype=np.int64) + k) % PATTERN_PERIOD
        scale = np.float32(std * (1.0 + k / 1024.0))
        return (base[idx] * scale).astype(np.float32).reshape(shape)

    # --- CNN pieces (PyTorch-export style: Conv without bias, then BatchNormalization) ---

    def conv(self, x, cin, cout, kernel, stride=1, pads=None, group=1, bias=False):
        kh, kw = (kernel, kernel) if isinstance(kernel, int) else kernel
        sh, sw = (stride, stride) if isinstance(stride, int) else stride
        if pads is None:
            pads = [kh // 2, kw // 2, kh // 2, kw // 2]
        # He initialisation keeps activations O(1) through deep stacks, so the
        # recorded output is neither tiny nor saturated.
        fan_in = (cin // group) * kh * kw
        w = self.normal((cout, cin // group, kh, kw), np.sqrt(2.0 / fan_in))
        ins = [x, self.const("conv_w", w)]
        if bias:
            ins.append(self.const("conv_b", self.normal((cout,), 0.1)))
        attrs = dict(kernel_shape=[kh, kw], strides=[sh, sw], pads=list(pads))
        if group != 1:
            attrs["group"] = group
        return self.node("Conv", ins, **attrs)

    def bn(self, x, c, scale_range=(0.5, 1.5)):
        scale = self.rng.uniform(*scale_range, c).astype(np.float32)
        bias = self.normal((c,), 0.1)
        mean = self.normal((c,), 0.1)
        var = self.rng.uniform(0.5, 1.5, c).astype(np.float32)
        ins = [x] + [self.const(p, a) for p, a in
                     (("bn_scale", scale), ("bn_bias", bias), ("bn_mean", mean), ("bn_var", var))]
        return self.node("BatchNormalization", ins, epsilon=BN_EPS)

    def conv_bn(self, x, cin, cout, kernel, stride=1, pads=None, group=1, scale_range=(0.5, 1.5)):
        """Conv + BatchNormalization, or one Conv with the BN folded into its
        weights and bias (same random draws either way, so both forms compute
        the same function)."""
        y = self.conv(x, cin, cout, kernel, stride, pads, group)
        if not self.fold_bn:
            return self.bn(y, cout, scale_range)
        conv = self.nodes[-1]
        w_init = next(t for t in self.inits if t.name == conv.input[1])
        w = numpy_helper.to_array(w_init)
        scale = self.rng.uniform(*scale_range, cout).astype(np.float32)
        bias = self.normal((cout,), 0.1)
        mean = self.normal((cout,), 0.1)
        var = self.rng.uniform(0.5, 1.5, cout).astype(np.float32)
        k = scale / np.sqrt(var + np.float32(BN_EPS))
        w_init.CopyFrom(numpy_helper.from_array((w * k[:, None, None, None]).astype(np.float32), w_init.name))
        conv.input.append(self.const("conv_b", (bias - mean * k).astype(np.float32)))
        return y

    def relu(self, x):
        return self.node("Relu", [x])

    def classifier(self, x, cin, classes, out_name="logits"):
        x = self.node("GlobalAveragePool", [x])
        x = self.node("Flatten", [x], axis=1)
        w = self.normal((classes, cin), 1.0 / np.sqrt(cin))
        b = self.normal((classes,), 0.1)
        self.node("Gemm", [x, self.const("fc_w", w), self.const("fc_b", b)], transB=1)
        self.nodes[-1].output[0] = out_name
        return out_name

    def model(self, graph_name, inputs, outputs):
        """inputs/outputs: [(name, shape)], all float32."""
        graph = helper.make_graph(
            self.nodes,
            graph_name,
            [helper.make_tensor_value_info(n, TensorProto.FLOAT, s) for n, s in inputs],
            [helper.make_tensor_value_info(n, TensorProto.FLOAT, s) for n, s in outputs],
            self.inits,
        )
        m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                              producer_name="smelt-examples")
        m.ir_version = 8
        return m


def describe(model):
    params = 0
    for t in model.graph.initializer:
        params += int(np.prod(t.dims, dtype=np.int64))
    hist = collections.Counter(n.op_type for n in model.graph.node)

    def shapes(vis):
        return {v.name: [d.dim_value for d in v.type.tensor_type.shape.dim] for v in vis}

    return {
        "graph": model.graph.name,
        "opset": OPSET,
        "nodes": len(model.graph.node),
        "params": params,
        "initializers": len(model.graph.initializer),
        "inputs": shapes(model.graph.input),
        "declared_outputs": shapes(model.graph.output),
        "op_histogram": dict(sorted(hist.items(), key=lambda kv: (-kv[1], kv[0]))),
    }


def save(out_dir, model, feeds, extra_info=None):
    """Writes the layout above; returns the info dict. Consumes `model`
    (its initializers are moved out to weights.bin)."""
    info = describe(model)
    if extra_info:
        info.update(extra_info)
    os.makedirs(out_dir, exist_ok=True)
    for f in os.listdir(out_dir):
        # A stale weights.bin would be appended to, not replaced.
        if f in ("model.onnx", WEIGHTS_FILE, "info.json") or f.startswith(("input_", "expected_")):
            os.remove(os.path.join(out_dir, f))
    path = os.path.join(out_dir, "model.onnx")
    t0 = time.perf_counter()
    onnx.save(model, path, save_as_external_data=True, all_tensors_to_one_file=True,
              location=WEIGHTS_FILE, size_threshold=1024)
    del model
    info["save_s"] = round(time.perf_counter() - t0, 2)
    # The path form of the checker reads external data and runs shape inference.
    onnx.checker.check_model(path, full_check=True)
    loaded = onnx.load(path, load_external_data=False)
    for i, inp in enumerate(loaded.graph.input):
        onnx.save_tensor(numpy_helper.from_array(feeds[inp.name], inp.name),
                         os.path.join(out_dir, f"input_{i}.pb"))

    opts = ort.SessionOptions()
    # Unfused execution keeps the reference close to the graph as written
    # (no Conv+BN folding or attention fusion that would change rounding).
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    sess = ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])
    t0 = time.perf_counter()
    outs = sess.run(None, feeds)
    info["ort_run_s"] = round(time.perf_counter() - t0, 3)
    names = [o.name for o in sess.get_outputs()]
    info["outputs"] = {}
    for i, (name, value) in enumerate(zip(names, outs)):
        if not np.all(np.isfinite(value)):
            raise SystemExit(f"{out_dir}: onnxruntime output {name} has non-finite values")
        onnx.save_tensor(numpy_helper.from_array(value, name), os.path.join(out_dir, f"expected_{i}.pb"))
        info["outputs"][name] = {
            "shape": list(value.shape),
            "max_abs": float(np.abs(value).max()),
            "mean": float(value.astype(np.float64).mean()),
        }
    info["model_onnx_bytes"] = os.path.getsize(path)
    wpath = os.path.join(out_dir, WEIGHTS_FILE)
    info["weights_bin_bytes"] = os.path.getsize(wpath) if os.path.exists(wpath) else 0
    with open(os.path.join(out_dir, "info.json"), "w") as f:
        json.dump(info, f, indent=2)
        f.write("\n")
    print(f"wrote {out_dir}: {info['nodes']} nodes, {info['params']:,} params, outputs "
          + ", ".join(f"{n}{o['shape']} max|y|={o['max_abs']:.3g}" for n, o in info["outputs"].items())
          + f", ort {info['ort_run_s']}s")
    return info


def default_out(name):
    repo = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
    return os.path.join(repo, ".cache", "models", name)
