"""Shared by the examples' make.py scripts: run onnxruntime on a model, cross-check
it against onnx's reference evaluator, and write model / inputs / expected
outputs in the TensorProto files that `smelt run` reads and writes."""
import os

import numpy as np
import onnx
import onnxruntime as ort
from onnx import numpy_helper


def run_ort(model, feeds):
    opts = ort.SessionOptions()
    # Unfused execution keeps the reference close to the graph as written
    # (no Conv+BN folding or attention fusion that would change rounding).
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    sess = ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    return sess.run(None, feeds), [o.name for o in sess.get_outputs()]


def check_against_reference(model, feeds, outs, tol=1e-4):
    # A second, independent implementation guards the recorded output against
    # an onnxruntime quirk becoming the expected answer.
    from onnx.reference import ReferenceEvaluator

    ref = ReferenceEvaluator(model).run(None, feeds)
    for r, o in zip(ref, outs):
        err = float(np.max(np.abs(r.astype(np.float64) - o.astype(np.float64))))
        if not np.allclose(r, o, rtol=tol, atol=tol):
            raise SystemExit(f"onnxruntime and onnx.reference disagree (max abs err {err})")


def save(out_dir, model, feeds, cross_check=True):
    """Writes model.onnx, input_<i>.pb (feeds in graph-input order) and
    expected_<i>.pb (onnxruntime's outputs) into out_dir."""
    onnx.checker.check_model(model, full_check=True)
    os.makedirs(out_dir, exist_ok=True)
    onnx.save(model, os.path.join(out_dir, "model.onnx"))
    for i, inp in enumerate(model.graph.input):
        t = numpy_helper.from_array(feeds[inp.name], inp.name)
        onnx.save_tensor(t, os.path.join(out_dir, f"input_{i}.pb"))
    outs, names = run_ort(model, feeds)
    if cross_check:
        check_against_reference(model, feeds, outs)
    for i, (name, value) in enumerate(zip(names, outs)):
        t = numpy_helper.from_array(value, name)
        onnx.save_tensor(t, os.path.join(out_dir, f"expected_{i}.pb"))
    print(f"wrote {out_dir}: {len(model.graph.node)} nodes, outputs "
          + ", ".join(f"{n}{list(v.shape)} max|y|={float(np.abs(v).max()):.3g}" for n, v in zip(names, outs)))
    return outs
