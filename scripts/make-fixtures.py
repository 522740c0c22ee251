#!/usr/bin/env python3
"""Regenerates the committed fixtures from ../shared/models (run by a developer, not by CI).

- examples/models/<name>/1/model.onnx + config.pbtxt: a Triton-layout model repository
  (digits_mlp, digits_cnn, digits_mlp_int8, mobilenet_v2).
- tests/fixtures/refs/<name>/<case>/{inputs,outputs}.npz: ONNX Runtime reference cases,
  converted from the shared rawtensors-v1 bundles.
- tests/fixtures/det.onnx: Det, an op ONNX Runtime runs and tract does not implement.
- tests/fixtures/custom_op.onnx: an op no backend knows (domain com.example).
- tests/fixtures/odd_names.onnx: outputs whose names are not file names.

Usage: .venv/bin/python scripts/make-fixtures.py [--shared ../shared/models]
"""
import argparse
import json
import shutil
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper

ROOT = Path(__file__).resolve().parent.parent
MODELS = {
    "digits_mlp": "digits_mlp",
    "digits_cnn": "digits_cnn",
    "digits_mlp_int8": "digits_mlp.int8",
    "mobilenet_v2": "mobilenet_v2",
}
DTYPES = {"float32": np.float32, "float16": np.float16, "float64": np.float64, "int64": np.int64,
          "int32": np.int32, "int8": np.int8, "uint8": np.uint8, "bool": np.bool_}
TRITON = {1: "TYPE_FP32", 7: "TYPE_INT64", 6: "TYPE_INT32", 9: "TYPE_BOOL", 2: "TYPE_UINT8"}


def read_bundle(stem: Path) -> dict:
    head = json.loads(stem.with_suffix(".json").read_text())
    blob = (stem.parent / head["data_file"]).read_bytes()
    out = {}
    for t in head["tensors"]:
        a = np.frombuffer(blob, dtype=DTYPES[t["dtype"]], count=int(np.prod(t["shape"], dtype=np.int64)),
                          offset=t["offset"])
        out[t["name"]] = a.reshape(t["shape"])
    return out


def config_pbtxt(name: str, model: onnx.ModelProto, max_batch: int, delay_us: int) -> str:
    def io(v, kind):
        dims = [d.dim_value if d.dim_value else -1 for d in v.type.tensor_type.shape.dim][1:]
        return (f'{kind} [\n  {{\n    name: "{v.name}"\n    data_type: {TRITON[v.type.tensor_type.elem_type]}\n'
                f'    dims: [ {", ".join(str(d) for d in dims)} ]\n  }}\n]\n')
    text = f'name: "{name}"\nplatform: "onnxruntime_onnx"\nmax_batch_size: {max_batch}\n'
    for v in model.graph.input:
        text += io(v, "input")
    for v in model.graph.output:
        text += io(v, "output")
    text += f"dynamic_batching {{\n  max_queue_delay_microseconds: {delay_us}\n}}\n"
    text += "instance_group [\n  {\n    count: 1\n    kind: KIND_CPU\n  }\n]\n"
    return text


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--shared", default=str(ROOT.parent / "shared" / "models"))
    shared = Path(ap.parse_args().shared)
    for name, src in MODELS.items():
        dst = ROOT / "examples" / "models" / name
        (dst / "1").mkdir(parents=True, exist_ok=True)
        shutil.copyfile(shared / f"{src}.onnx", dst / "1" / "model.onnx")
        model = onnx.load(str(shared / f"{src}.onnx"))
        (dst / "config.pbtxt").write_text(config_pbtxt(name, model, *((8, 500) if name == "mobilenet_v2" else (64, 0))))
        for case in sorted((shared / f"{src}.ref").iterdir()):
            out = ROOT / "tests" / "fixtures" / "refs" / name / case.name
            out.mkdir(parents=True, exist_ok=True)
            np.savez(out / "inputs.npz", **read_bundle(case / "inputs"))
            np.savez(out / "outputs.npz", **read_bundle(case / "outputs"))

    fixtures = ROOT / "tests" / "fixtures"
    det = helper.make_model(
        helper.make_graph([helper.make_node("Det", ["x"], ["y"], name="det_0")], "det",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 2])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [])]),
        opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    onnx.checker.check_model(det)
    onnx.save(det, str(fixtures / "det.onnx"))
    custom = helper.make_model(
        helper.make_graph([helper.make_node("NoSuchOp", ["x"], ["y"], name="mystery_0", domain="com.example")],
                          "custom", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])]),
        opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.example", 1)], ir_version=8)
    onnx.save(custom, str(fixtures / "custom_op.onnx"))
    odd = helper.make_model(
        helper.make_graph([helper.make_node("Identity", ["x"], ["probs/out:0"], name="id_0"),
                           helper.make_node("Neg", ["x"], ["probs out"], name="neg_0")],
                          "odd", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 2])],
                          [helper.make_tensor_value_info("probs/out:0", TensorProto.FLOAT, ["batch", 2]),
                           helper.make_tensor_value_info("probs out", TensorProto.FLOAT, ["batch", 2])]),
        opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    onnx.checker.check_model(odd)
    onnx.save(odd, str(fixtures / "odd_names.onnx"))
    print("fixtures written")


if __name__ == "__main__":
    main()
