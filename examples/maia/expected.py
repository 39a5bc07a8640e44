"""Expected outputs of the example programs, computed with numpy (the oracle
for runtime/tests). Inputs follow the same formulas as the Rust test:
  matmul: a[i] = ((7 i) % 13 - 6) / 8, b[i] = ((5 i) % 11 - 5) / 4 (flat index,
          exact in bf16), c = a @ b.T in float64 (exact: small dyadic values)
  softmax: x[i] = ((7 i) % 13 - 6) / 4, y = softmax(x, axis=1) in float64.
Run: /work/venv/bin/python examples/maia/expected.py > examples/maia/expected.json
"""
import json
import numpy as np

i = np.arange(32 * 64)
a = (((7 * i) % 13 - 6) / 8).reshape(32, 64)
b = (((5 * i) % 11 - 5) / 4).reshape(32, 64)
c = a @ b.T
j = np.arange(8 * 64)
x = (((7 * j) % 13 - 6) / 4).reshape(8, 64)
e = np.exp(x - x.max(axis=1, keepdims=True))
y = e / e.sum(axis=1, keepdims=True)
print(json.dumps({"matmul_c": c.ravel().tolist(), "softmax_y": y.ravel().tolist()}))
