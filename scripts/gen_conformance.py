#!/usr/bin/env python3
"""Generates the official ONNX backend node tests into a folder (default
.cache/onnx-node) in the backend-test layout that `smelt conformance` reads:

    <case>/model.onnx
    <case>/case.json                      {"rtol": ..., "atol": ...} from the case
    <case>/test_data_set_N/input_i.pb     TensorProto (or Sequence/Optional/Map proto)
    <case>/test_data_set_N/output_i.pb

The cases come from the generators shipped in the pinned `onnx` wheel
(onnx.backend.test.case.node.collect_testcases), so they are the same ~1,884
cases ONNX's own backend test suite runs. Usage:
    python scripts/gen_conformance.py [OUT_DIR]
"""
import json
import os
import shutil
import sys
import warnings

import numpy as np
import onnx
from onnx import TensorProto, numpy_helper
from onnx.backend.test.case import node


def proto_for(value, vi):
    t = vi.type
    if t.HasField("sequence_type"):
        return numpy_helper.from_list(value, vi.name)
    if t.HasField("optional_type"):
        return numpy_helper.from_optional(value, vi.name)
    if t.HasField("map_type"):
        return numpy_helper.from_dict(value, vi.name)
    if isinstance(value, TensorProto):
        return value
    return numpy_helper.from_array(np.asarray(value), vi.name)


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(".cache", "onnx-node")
    warnings.simplefilter("ignore")
    np.seterr(all="ignore")
    cases = node.collect_testcases(None)
    if os.path.exists(out):
        shutil.rmtree(out)
    os.makedirs(out)
    written = 0
    for case in cases:
        if case.model is None or not case.data_sets:
            continue
        d = os.path.join(out, case.name)
        os.makedirs(d)
        with open(os.path.join(d, "model.onnx"), "wb") as f:
            f.write(case.model.SerializeToString())
        with open(os.path.join(d, "case.json"), "w") as f:
            json.dump({"rtol": case.rtol, "atol": case.atol}, f, sort_keys=True)
        g = case.model.graph
        for i, (inputs, outputs) in enumerate(case.data_sets):
            ds = os.path.join(d, f"test_data_set_{i}")
            os.makedirs(ds)
            for j, x in enumerate(inputs):
                with open(os.path.join(ds, f"input_{j}.pb"), "wb") as f:
                    f.write(proto_for(x, g.input[j]).SerializeToString())
            for j, y in enumerate(outputs):
                with open(os.path.join(ds, f"output_{j}.pb"), "wb") as f:
                    f.write(proto_for(y, g.output[j]).SerializeToString())
        written += 1
    with open(os.path.join(out, "VERSION"), "w") as f:
        f.write(f"onnx {onnx.__version__}\n")
    print(f"wrote {written} cases to {out} (onnx {onnx.__version__})")


if __name__ == "__main__":
    main()
