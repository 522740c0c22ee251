#!/usr/bin/env python3
"""Regenerates the small models of tests/fixtures/triton/ (run by a developer, not by CI;
needs only onnx, numpy and onnxruntime from scripts/requirements-test.txt).

- reshape_var.onnx: y = 2x over x [N,8,L,1,6], for config.pbtxt `reshape` with a -1
  (clients send dims [2,4,-1,6], the model sees [8,-1,1,6]).
- scalar_row.onnx: y = s + 1 over s [N], one scalar per row (`reshape: { shape: [] }`,
  clients send [N,1]).
- string_cast.onnx: n = Cast<INT32>(text) over text STRING [N,2]: a model that parses
  strings, which empty strings make fail.
- upsample_concat.onnx: a detector-style neck over images [N,3,H,W] with free H and W:
  a stride-2 convolution, a x2 nearest upsample, and a Concat with the input, which needs
  H and W even (H = W = 1 fails in ONNX Runtime: "Non concat axis dimensions must match").
  upsample_concat.npz holds ONNX Runtime's outputs for two inputs (`images_b1`,
  `features_b1`: 1x3x8x8; `images_b2`, `features_b2`: 2x3x12x16).
- lstm_state.onnx: one LSTM step over x [2,1,3] whose state comes in (h0, c0 [1,1,4])
  and goes out (hn, cn) as ordinary tensors, as voice-activity models pass it: the same
  inputs must give the same outputs however often and in whatever order they run.

Usage: .venv/bin/python scripts/make-triton-fixtures.py
"""
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "tests" / "fixtures" / "triton"


def save(graph: onnx.GraphProto, name: str) -> Path:
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)],
                          producer_name="lrai make-triton-fixtures")
    m.ir_version = 8
    onnx.checker.check_model(m, full_check=True)
    path = OUT / name
    onnx.save(m, str(path))
    return path


def reshape_var() -> None:
    shape = ["N", 8, "L", 1, 6]
    g = helper.make_graph(
        [helper.make_node("Mul", ["x", "two"], ["y"])],
        "reshape_var",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, shape)],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, shape)],
        [numpy_helper.from_array(np.array(2.0, np.float32), "two")],
    )
    save(g, "reshape_var.onnx")


def scalar_row() -> None:
    g = helper.make_graph(
        [helper.make_node("Add", ["s", "one"], ["y"])],
        "scalar_row",
        [helper.make_tensor_value_info("s", TensorProto.FLOAT, ["N"])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N"])],
        [numpy_helper.from_array(np.array(1.0, np.float32), "one")],
    )
    save(g, "scalar_row.onnx")


def string_cast() -> None:
    g = helper.make_graph(
        [helper.make_node("Cast", ["text"], ["n"], to=TensorProto.INT32)],
        "string_cast",
        [helper.make_tensor_value_info("text", TensorProto.STRING, ["N", 2])],
        [helper.make_tensor_value_info("n", TensorProto.INT32, ["N", 2])],
    )
    save(g, "string_cast.onnx")


def upsample_concat() -> None:
    rng = np.random.default_rng(14)
    w = (rng.standard_normal((3, 3, 3, 3)) * 0.3).astype(np.float32)
    b = (rng.standard_normal(3) * 0.1).astype(np.float32)
    nodes = [
        helper.make_node("Conv", ["images", "w", "b"], ["down"], kernel_shape=[3, 3],
                         strides=[2, 2], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["down"], ["act"]),
        helper.make_node("Resize", ["act", "", "scales"], ["up"], mode="nearest",
                         coordinate_transformation_mode="asymmetric", nearest_mode="floor"),
        helper.make_node("Concat", ["images", "up"], ["features"], axis=1),
    ]
    g = helper.make_graph(
        nodes,
        "upsample_concat",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, ["N", 3, "H", "W"])],
        [helper.make_tensor_value_info("features", TensorProto.FLOAT, ["N", 6, "H", "W"])],
        [
            numpy_helper.from_array(w, "w"),
            numpy_helper.from_array(b, "b"),
            numpy_helper.from_array(np.array([1, 1, 2, 2], np.float32), "scales"),
        ],
    )
    path = save(g, "upsample_concat.onnx")

    import onnxruntime as ort

    s = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    arrays = {}
    for case, shape in (("b1", (1, 3, 8, 8)), ("b2", (2, 3, 12, 16))):
        x = rng.standard_normal(shape).astype(np.float32)
        (y,) = s.run(["features"], {"images": x})
        arrays[f"images_{case}"] = x
        arrays[f"features_{case}"] = y
    try:
        s.run(["features"], {"images": np.zeros((1, 3, 1, 1), np.float32)})
    except Exception as e:  # noqa: BLE001 - the point: invented 1x1 spatial dims fail
        print(f"upsample_concat at 1x1, as an invented warm-up shape would run it: {e}")
    else:
        raise SystemExit("upsample_concat should fail at H = W = 1")
    np.savez(OUT / "upsample_concat.npz", **arrays)


def lstm_state() -> None:
    rng = np.random.default_rng(15)
    hidden, size = 4, 3

    def weights(name, *shape, scale):
        return numpy_helper.from_array((rng.standard_normal(shape) * scale).astype(np.float32), name)

    g = helper.make_graph(
        [helper.make_node("LSTM", ["x", "W", "R", "B", "", "h0", "c0"], ["y", "hn", "cn"],
                          hidden_size=hidden)],
        "lstm_state",
        [
            helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 1, size]),
            helper.make_tensor_value_info("h0", TensorProto.FLOAT, [1, 1, hidden]),
            helper.make_tensor_value_info("c0", TensorProto.FLOAT, [1, 1, hidden]),
        ],
        [
            helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 1, 1, hidden]),
            helper.make_tensor_value_info("hn", TensorProto.FLOAT, [1, 1, hidden]),
            helper.make_tensor_value_info("cn", TensorProto.FLOAT, [1, 1, hidden]),
        ],
        [
            weights("W", 1, 4 * hidden, size, scale=0.5),
            weights("R", 1, 4 * hidden, hidden, scale=0.5),
            weights("B", 1, 8 * hidden, scale=0.1),
        ],
    )
    save(g, "lstm_state.onnx")


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    reshape_var()
    scalar_row()
    string_cast()
    upsample_concat()
    lstm_state()
    for p in sorted(OUT.iterdir()):
        print(f"{p.relative_to(ROOT)}: {p.stat().st_size} bytes")


if __name__ == "__main__":
    main()
