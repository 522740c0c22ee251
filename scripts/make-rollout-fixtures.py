#!/usr/bin/env python3
"""Candidate versions of digits_mlp for the rollout tests (tests/server_rollout.rs).

- digits_mlp_permuted.onnx: the same network with its logits permuted (a Gather on the
  class axis), so it answers with the same confidence but the wrong class: a candidate
  that is broken in output, not in errors or latency.
- digits_mlp_fine.onnx: the same network with `+ 0` on the logits: different bytes, the
  same answers.

Both are checked against ONNX Runtime on the committed digits inputs before writing.
Run: python3 scripts/make-rollout-fixtures.py  (needs onnx, onnxruntime, numpy)
"""
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnx import helper, numpy_helper

ROOT = Path(__file__).resolve().parent.parent
SOURCE = ROOT / "examples/models/digits_mlp/1/model.onnx"
OUT = ROOT / "tests/fixtures/rollout"
# A derangement of the 10 classes: every class moves, so top-1 never agrees.
PERM = np.array([3, 7, 0, 9, 1, 8, 2, 5, 4, 6], dtype=np.int64)


def with_tail(model, node_op, extra_init, attrs=None):
    m = onnx.ModelProto()
    m.CopyFrom(model)
    last = m.graph.node[-1]
    assert list(last.output) == ["logits"], last.output
    last.output[0] = "logits_raw"
    m.graph.initializer.append(extra_init)
    m.graph.node.append(
        helper.make_node(node_op, ["logits_raw", extra_init.name], ["logits"], **(attrs or {}))
    )
    onnx.checker.check_model(m)
    return m


def run(model, x):
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return sess.run(None, {"input": x})[0]


def main():
    base = onnx.load(SOURCE)
    permuted = with_tail(base, "Gather", numpy_helper.from_array(PERM, "perm"), {"axis": 1})
    fine = with_tail(base, "Add", numpy_helper.from_array(np.zeros(10, np.float32), "zero"))
    x = np.random.default_rng(0).uniform(0, 16, size=(256, 64)).astype(np.float32)
    y = run(base, x)
    yp = run(permuted, x)
    yf = run(fine, x)
    assert np.array_equal(yp, y[:, PERM])
    assert np.array_equal(yf, y)
    agree = float(np.mean(yp.argmax(1) == y.argmax(1)))
    assert agree == 0.0, agree
    OUT.mkdir(parents=True, exist_ok=True)
    onnx.save(permuted, OUT / "digits_mlp_permuted.onnx")
    onnx.save(fine, OUT / "digits_mlp_fine.onnx")
    print(f"wrote {OUT}: permuted (top-1 agreement {agree}), fine (identical outputs)")


if __name__ == "__main__":
    main()
