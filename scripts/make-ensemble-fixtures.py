#!/usr/bin/env python3
"""Regenerates tests/fixtures/ensemble/ (run by a developer, not by CI; needs only onnx,
numpy and onnxruntime from scripts/requirements-test.txt): a Triton repository with three
step models and an ensemble over them, and the reference outputs ONNX Runtime gives when
it runs the steps one after another.

    RAW ──> ens_pre ──FEAT──> ens_clf ──> PROBS
     │                 │
     └──────> ens_score <┘ ──> SCORE        (ens_clf and ens_score run side by side)

- ens_pre: feat = (raw - mean) * inv_std over raw [N,4]
- ens_clf: probs = Softmax(x @ W + b) over x [N,4] -> [N,3]
- ens_score: s = ReduceSum(a * b, axis 1, keepdims) over a, b [N,4] -> [N,1]
- ens_pipeline: platform "ensemble", max_batch_size 8, input RAW [4], outputs PROBS [3]
  and SCORE [1]; its version directory 1/ is empty (.gitkeep only), as Triton requires.

reference.json holds cases of RAW (batches of 1, 2 and 5 rows) with FEAT, PROBS and SCORE
as ONNX Runtime computes them step by step.

Usage: .venv/bin/python scripts/make-ensemble-fixtures.py
"""
import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "tests" / "fixtures" / "ensemble"
REPO = OUT / "repo"
RNG = np.random.default_rng(15)


def f32(name, shape):
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, shape)


def save(graph: onnx.GraphProto, model: str, config: str) -> Path:
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)],
                          producer_name="lrai make-ensemble-fixtures")
    m.ir_version = 8
    onnx.checker.check_model(m, full_check=True)
    d = REPO / model / "1"
    d.mkdir(parents=True, exist_ok=True)
    path = d / "model.onnx"
    onnx.save(m, str(path))
    (REPO / model / "config.pbtxt").write_text(config)
    return path


def tensor_config(kind, name, dims):
    return f'{kind} [ {{ name: "{name}" data_type: TYPE_FP32 dims: [ {dims} ] }} ]\n'


BATCHING = "max_batch_size: 8\ndynamic_batching { max_queue_delay_microseconds: 2000 }\n"


def pre() -> Path:
    mean = numpy_helper.from_array(np.array([0.5, -1.0, 2.0, 0.25], np.float32), "mean")
    inv_std = numpy_helper.from_array(np.array([2.0, 0.5, 1.5, 4.0], np.float32), "inv_std")
    g = helper.make_graph(
        [helper.make_node("Sub", ["raw", "mean"], ["centered"]),
         helper.make_node("Mul", ["centered", "inv_std"], ["feat"])],
        "ens_pre", [f32("raw", ["N", 4])], [f32("feat", ["N", 4])], [mean, inv_std])
    config = (BATCHING + tensor_config("input", "raw", "4")
              + tensor_config("output", "feat", "4"))
    return save(g, "ens_pre", config)


def clf() -> Path:
    w = numpy_helper.from_array(RNG.normal(size=(4, 3)).astype(np.float32), "w")
    b = numpy_helper.from_array(RNG.normal(size=(3,)).astype(np.float32), "b")
    g = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["xw"]),
         helper.make_node("Add", ["xw", "b"], ["logits"]),
         helper.make_node("Softmax", ["logits"], ["probs"], axis=1)],
        "ens_clf", [f32("x", ["N", 4])], [f32("probs", ["N", 3])], [w, b])
    config = (BATCHING + tensor_config("input", "x", "4")
              + tensor_config("output", "probs", "3"))
    return save(g, "ens_clf", config)


def score() -> Path:
    axes = numpy_helper.from_array(np.array([1], np.int64), "axes")
    g = helper.make_graph(
        [helper.make_node("Mul", ["a", "b"], ["ab"]),
         helper.make_node("ReduceSum", ["ab", "axes"], ["s"], keepdims=1)],
        "ens_score", [f32("a", ["N", 4]), f32("b", ["N", 4])], [f32("s", ["N", 1])], [axes])
    config = (BATCHING
              + 'input [ { name: "a" data_type: TYPE_FP32 dims: [ 4 ] },\n'
                '        { name: "b" data_type: TYPE_FP32 dims: [ 4 ] } ]\n'
              + tensor_config("output", "s", "1"))
    return save(g, "ens_score", config)


PIPELINE = """name: "ens_pipeline"
platform: "ensemble"
max_batch_size: 8
input [ { name: "RAW" data_type: TYPE_FP32 dims: [ 4 ] } ]
output [
  { name: "PROBS" data_type: TYPE_FP32 dims: [ 3 ] },
  { name: "SCORE" data_type: TYPE_FP32 dims: [ 1 ] }
]
ensemble_scheduling {
  step [
    {
      model_name: "ens_pre"
      model_version: -1
      input_map { key: "raw" value: "RAW" }
      output_map { key: "feat" value: "FEAT" }
    },
    {
      model_name: "ens_clf"
      model_version: -1
      input_map { key: "x" value: "FEAT" }
      output_map { key: "probs" value: "PROBS" }
    },
    {
      model_name: "ens_score"
      model_version: -1
      input_map { key: "a" value: "RAW" }
      input_map { key: "b" value: "FEAT" }
      output_map { key: "s" value: "SCORE" }
    }
  ]
}
"""


def main() -> None:
    paths = {"pre": pre(), "clf": clf(), "score": score()}
    d = REPO / "ens_pipeline" / "1"
    d.mkdir(parents=True, exist_ok=True)
    (d / ".gitkeep").write_text("")
    (REPO / "ens_pipeline" / "config.pbtxt").write_text(PIPELINE)
    run = {k: ort.InferenceSession(str(p), providers=["CPUExecutionProvider"])
           for k, p in paths.items()}
    cases = []
    for rows in (1, 2, 5):
        raw = RNG.normal(size=(rows, 4)).astype(np.float32)
        feat = run["pre"].run(None, {"raw": raw})[0]
        probs = run["clf"].run(None, {"x": feat})[0]
        s = run["score"].run(None, {"a": raw, "b": feat})[0]
        cases.append({k: v.tolist() for k, v in
                      {"raw": raw, "feat": feat, "probs": probs, "score": s}.items()})
    (OUT / "reference.json").write_text(json.dumps({"cases": cases}, indent=1) + "\n")
    print(f"wrote {REPO} and {OUT / 'reference.json'}")


if __name__ == "__main__":
    main()
