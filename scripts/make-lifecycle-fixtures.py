#!/usr/bin/env python3
"""Regenerates the models of tests/fixtures/lifecycle/ (run by a developer, not by CI;
needs onnx, numpy and onnxruntime from scripts/requirements-test.txt).

Version swaps are tested with two versions whose outputs differ in a known way, so every
answer can be checked against the version that gave it:

- plus_1.onnx: y = MatMul(x, I) + 1 over x FP32 [N,16]
- plus_2.onnx: y = MatMul(x, I) + 2 over x FP32 [N,16]

The 16x16 identity MatMul gives each request a little work (and keeps the add exact).
Both are checked here against ONNX Runtime: y == x + k exactly for small integers.

Usage: .venv/bin/python scripts/make-lifecycle-fixtures.py
"""
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "tests" / "fixtures" / "lifecycle"
WIDTH = 16


def plus(k: int) -> onnx.ModelProto:
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", WIDTH])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", WIDTH])
    eye = numpy_helper.from_array(np.eye(WIDTH, dtype=np.float32), "eye")
    bias = numpy_helper.from_array(np.full([WIDTH], k, dtype=np.float32), "bias")
    nodes = [
        helper.make_node("MatMul", ["x", "eye"], ["m"]),
        helper.make_node("Add", ["m", "bias"], ["y"]),
    ]
    graph = helper.make_graph(nodes, f"plus_{k}", [x], [y], [eye, bias])
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)],
                          producer_name="lrai make-lifecycle-fixtures")
    m.ir_version = 8
    onnx.checker.check_model(m, full_check=True)
    return m


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    x = np.arange(3 * WIDTH, dtype=np.float32).reshape(3, WIDTH)
    for k in (1, 2):
        path = OUT / f"plus_{k}.onnx"
        onnx.save(plus(k), str(path))
        sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        (y,) = sess.run(None, {"x": x})
        assert np.array_equal(y, x + k), f"{path}: ONNX Runtime disagrees with x + {k}"
        print(f"wrote {path.relative_to(ROOT)} (ONNX Runtime: y == x + {k})")


if __name__ == "__main__":
    main()
