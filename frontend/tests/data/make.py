"""Writes the tensor fixtures of tests/tensor_io.rs.

Run with /work/venv/bin/python from this folder. The expected values in the
Rust tests are the arrays below.
"""

import numpy as np
from onnx import TensorProto, helper, numpy_helper

np.save("f32_2x3.npy", np.array([[1.5, -2.0, 0.0], [3.25, 4.0, -0.5]], dtype="<f4"))
np.save("i64_3.npy", np.array([-1, 0, 2**40], dtype="<i8"))
np.save("bool_2.npy", np.array([True, False]))
np.save("u8_scalar.npy", np.array(200, dtype=np.uint8))
np.save("f16_2.npy", np.array([1.0, -0.5], dtype="<f2"))
np.save("fortran.npy", np.asfortranarray(np.arange(6, dtype="<f4").reshape(2, 3)))
np.save("big_endian.npy", np.array([1.0], dtype=">f4"))
with open("v2.npy", "wb") as f:
    np.lib.format.write_array(f, np.array([7, 8], dtype="<i4"), version=(2, 0))

with open("raw_f32.pb", "wb") as f:
    f.write(numpy_helper.from_array(np.array([0.25, -1.0], dtype=np.float32), "x").SerializeToString())
with open("typed_i32.pb", "wb") as f:
    f.write(helper.make_tensor("y", TensorProto.INT32, [2, 2], [1, -2, 3, -4]).SerializeToString())
with open("strings.pb", "wb") as f:
    f.write(helper.make_tensor("s", TensorProto.STRING, [2], [b"hello", b""]).SerializeToString())
