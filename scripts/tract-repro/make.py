#!/usr/bin/env python3
"""Writes one tiny ONNX model per tract defect (issue 14), each with its inputs, into DIR.

For each case NAME: DIR/NAME.onnx and DIR/NAME.npz (arrays named after the model's
inputs), plus DIR/cases.json listing the cases with one line each on what to look at.
Everything is deterministic (fixed seed, fixed values): the same files every time.

`scripts/tract-repro/run.sh DIR` runs every case on both of LRAI's backends, and on tract
alone through `crates/lrai-backend/examples/tract_raw.rs` (tract without LRAI's
workarounds); `docs/tract-upstream.md` has the results and the causes.

Usage: .venv/bin/python scripts/tract-repro/make.py DIR
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto as T
from onnx import helper, numpy_helper

RNG = np.random.default_rng(2014)
CASES: dict[str, tuple[onnx.ModelProto, dict[str, np.ndarray], str]] = {}
# Cases where tract ignores an attribute: the same model without it, written as NAME.ref.onnx,
# which run.sh runs on ONNX Runtime to show tract computes exactly that.
REFS: dict[str, onnx.ModelProto] = {}


def case(name: str, what: str, ignored: str | None = None):
    """Registers a function returning (model, inputs) as case `name`; `ignored` names the
    attribute tract ignores, for the NAME.ref.onnx written without it."""

    def register(build):
        model, inputs = build()
        onnx.checker.check_model(model, full_check=True)
        CASES[name] = (model, inputs, what)
        if ignored:
            REFS[name] = without(model, ignored)
        return build

    return register


def without(model: onnx.ModelProto, attribute: str) -> onnx.ModelProto:
    """A copy of a one-node model without `attribute` on its node."""
    ref = onnx.ModelProto()
    ref.CopyFrom(model)
    node = ref.graph.node[0]
    kept = [a for a in node.attribute if a.name != attribute]
    del node.attribute[:]
    node.attribute.extend(kept)
    onnx.checker.check_model(ref, full_check=True)
    return ref


def named(nodes):
    """Names nodes after their op and first output, as exporters do, so errors name them."""
    for n in nodes:
        n.name = n.name or f"{n.op_type}:{n.output[0]}"
        for a in n.attribute:
            if a.type == onnx.AttributeProto.GRAPH:
                named(a.g.node)
    return nodes


def model(nodes, inputs, outputs, opset=17, inits=(), domains=()):
    named(nodes)
    graph = helper.make_graph(nodes, "repro", inputs, outputs, list(inits))
    opsets = [helper.make_opsetid("", opset)] + [helper.make_opsetid(d, v) for d, v in domains]
    return helper.make_model(graph, opset_imports=opsets, ir_version=8,
                             producer_name="lrai-tract-repro")


def vi(name, elem, shape):
    return helper.make_tensor_value_info(name, elem, shape)


def init(name, array):
    return numpy_helper.from_array(np.asarray(array), name)


def weights(*shape):
    return (RNG.standard_normal(shape) * 0.5).astype(np.float32)


# --- quantization ------------------------------------------------------------------------


@case("qdq_softmax", "DQ -> Softmax -> Q folded into a 256-entry lookup table: every output saturates")
def qdq_softmax():
    x = RNG.integers(60, 200, size=(2, 8)).astype(np.uint8)
    nodes = [
        helper.make_node("DequantizeLinear", ["x", "x_scale", "x_zp"], ["d"]),
        helper.make_node("Softmax", ["d"], ["p"], axis=-1),
        helper.make_node("QuantizeLinear", ["p", "y_scale", "y_zp"], ["y"]),
    ]
    inits = [init("x_scale", np.float32(0.2082)), init("x_zp", np.uint8(114)),
             init("y_scale", np.float32(1 / 256)), init("y_zp", np.uint8(0))]
    return model(nodes, [vi("x", T.UINT8, [2, 8])], [vi("y", T.UINT8, [2, 8])], 13, inits), {"x": x}


@case("quantize_rounding", "QuantizeLinear rounds x * (1/scale), not x / scale: 1.6887525 / 0.026182208 = 64.50001 gives 64, not 65")
def quantize_rounding():
    # The first value is an input of a QuantizeLinear in an int8 transformer that LRAI's
    # quantizer wrote (tests/fixtures/quant/ops/transformer, i8 activations): in f32,
    # x / scale = 64.50001 but x * (1 / scale) = 64.5, which rounds to even (64).
    x = np.float32([1.6887525, 0.5, -1.6887525, 3.0])
    nodes = [helper.make_node("QuantizeLinear", ["x", "scale", "zp"], ["y"])]
    inits = [init("scale", np.float32(0.026182208)), init("zp", np.int8(0))]
    return model(nodes, [vi("x", T.FLOAT, [4])], [vi("y", T.INT8, [4])], 13, inits), {"x": x}


# --- recurrent state between runs --------------------------------------------------------


@case("scan_state", "Scan's state carried from one run to the next (same inputs, different outputs)")
def scan_state():
    body = helper.make_graph(
        [helper.make_node("Add", ["s_in", "x_t"], ["s_out"]),
         helper.make_node("Identity", ["s_out"], ["y_t"])],
        "body", [vi("s_in", T.FLOAT, [2]), vi("x_t", T.FLOAT, [2])],
        [vi("s_out", T.FLOAT, [2]), vi("y_t", T.FLOAT, [2])])
    scan = helper.make_node("Scan", ["s0", "xs"], ["s_final", "ys"], body=body, num_scan_inputs=1)
    inputs = {"s0": np.array([1.0, -1.0], np.float32),
              "xs": np.array([[1, 2], [3, 4], [5, 6]], np.float32)}
    return model([scan], [vi("s0", T.FLOAT, [2]), vi("xs", T.FLOAT, [3, 2])],
                 [vi("s_final", T.FLOAT, [2]), vi("ys", T.FLOAT, [3, 2])]), inputs


def recurrent(op, gates, hidden=4, features=3, steps=4, state=("initial_h",), **attrs):
    """An LSTM/GRU/RNN node with X and the initial states as graph inputs."""
    w = init("W", weights(1, gates * hidden, features))
    r = init("R", weights(1, gates * hidden, hidden))
    b = init("B", weights(1, 2 * gates * hidden))
    names = ["X", "W", "R", "B", ""] + list(state)
    outs = ["Y", "Y_h"] + (["Y_c"] if op == "LSTM" else [])
    node = helper.make_node(op, names, outs, hidden_size=hidden, **attrs)
    ins = [vi("X", T.FLOAT, [steps, 1, features])] + [vi(s, T.FLOAT, [1, 1, hidden]) for s in state]
    outputs = [vi("Y", T.FLOAT, [steps, 1, 1, hidden])] + [
        vi(o, T.FLOAT, [1, 1, hidden]) for o in outs[1:]]
    inputs = {"X": RNG.standard_normal((steps, 1, features)).astype(np.float32)}
    for s in state:
        inputs[s] = RNG.standard_normal((1, 1, hidden)).astype(np.float32)
    return model([node], ins, outputs, inits=[w, r, b]), inputs


@case("lstm_state", "LSTM hidden state carried from one run to the next (initial_h/c ignored after run 1)")
def lstm_state():
    return recurrent("LSTM", 4, state=("initial_h", "initial_c"))


@case("gru_state", "GRU hidden state carried from one run to the next (initial_h ignored after run 1)")
def gru_state():
    return recurrent("GRU", 3, linear_before_reset=1)


# --- recurrent attributes tract ignores --------------------------------------------------


@case("rnn_relu", "RNN activations=[Relu] computed with Tanh",
      ignored="activations")
def rnn_relu():
    return recurrent("RNN", 1, activations=["Relu"])


@case("gru_hardsigmoid", "GRU activations=[HardSigmoid, Tanh] computed with [Sigmoid, Tanh]",
      ignored="activations")
def gru_hardsigmoid():
    return recurrent("GRU", 3, activations=["HardSigmoid", "Tanh"])


@case("lstm_hardsigmoid", "LSTM activations=[HardSigmoid, Tanh, Tanh] computed with [Sigmoid, Tanh, Tanh]",
      ignored="activations")
def lstm_hardsigmoid():
    return recurrent("LSTM", 4, state=("initial_h", "initial_c"),
                     activations=["HardSigmoid", "Tanh", "Tanh"])


@case("lstm_clip", "LSTM clip=0.1 ignored",
      ignored="clip")
def lstm_clip():
    return recurrent("LSTM", 4, state=("initial_h", "initial_c"), clip=0.1)


@case("gru_clip", "GRU clip=0.1 ignored",
      ignored="clip")
def gru_clip():
    return recurrent("GRU", 3, clip=0.1)


@case("lstm_input_forget", "LSTM input_forget=1 ignored",
      ignored="input_forget")
def lstm_input_forget():
    return recurrent("LSTM", 4, state=("initial_h", "initial_c"), input_forget=1)


@case("lstm_reverse", "LSTM direction=reverse computed forward",
      ignored="direction")
def lstm_reverse():
    return recurrent("LSTM", 4, state=("initial_h", "initial_c"), direction="reverse")


@case("rnn_reverse", "RNN direction=reverse computed forward",
      ignored="direction")
def rnn_reverse():
    return recurrent("RNN", 1, direction="reverse")


@case("gru_reverse", "GRU direction=reverse computed forward",
      ignored="direction")
def gru_reverse():
    return recurrent("GRU", 3, direction="reverse")


# --- analysis and parsing ----------------------------------------------------------------


def if_branches(cond_nodes, cond_inputs, x_shape):
    """`If(cond)`: then `x`, else `x` unsqueezed (one rank more). The branches leave their
    shapes undeclared, as exporters do; the graph output declares the then-branch's."""
    then_g = helper.make_graph([helper.make_node("Identity", ["x"], ["t"])], "then", [],
                               [vi("t", T.FLOAT, None)])
    else_g = helper.make_graph(
        [helper.make_node("Constant", [], ["ax"], value=init("ax_v", np.array([-1], np.int64))),
         helper.make_node("Unsqueeze", ["x", "ax"], ["e"])], "else", [],
        [vi("e", T.FLOAT, None)])
    node = helper.make_node("If", ["cond"], ["y"], then_branch=then_g, else_branch=else_g)
    return model(cond_nodes + [node], cond_inputs + [vi("x", T.FLOAT, x_shape)],
                 [vi("y", T.FLOAT, x_shape)])


@case("if_value_cond", "If whose branches differ in rank, condition from an input value")
def if_value_cond():
    m = if_branches([], [vi("cond", T.BOOL, [])], [2, 3])
    return m, {"cond": np.array(True), "x": np.arange(6, dtype=np.float32).reshape(2, 3)}


@case("if_shape_cond", "If whose branches differ in rank, condition from the input's shape")
def if_shape_cond():
    cond = [
        helper.make_node("Shape", ["x"], ["shape"]),
        helper.make_node("Constant", [], ["one"], value=init("one_v", np.array(1, np.int64))),
        helper.make_node("Gather", ["shape", "one"], ["n"], axis=0),
        helper.make_node("Constant", [], ["three"], value=init("three_v", np.array(3, np.int64))),
        helper.make_node("Equal", ["n", "three"], ["cond"]),
    ]
    m = if_branches(cond, [], [2, "n"])
    return m, {"x": np.arange(6, dtype=np.float32).reshape(2, 3)}


@case("squeeze_no_axes", "opset-11 Squeeze without axes (squeeze every size-1 dim) refused")
def squeeze_no_axes():
    node = helper.make_node("Squeeze", ["x"], ["y"])
    m = model([node], [vi("x", T.FLOAT, [1, 3, 1, 2])], [vi("y", T.FLOAT, [3, 2])], opset=11)
    return m, {"x": np.arange(6, dtype=np.float32).reshape(1, 3, 1, 2)}


@case("batchnorm_computed", "BatchNormalization whose scale is computed, not an initializer")
def batchnorm_computed():
    nodes = [
        helper.make_node("Abs", ["g"], ["scale"]),
        helper.make_node("BatchNormalization", ["x", "scale", "bias", "mean", "var"], ["y"]),
    ]
    inits = [init("bias", np.float32([0.1, 0.2, 0.3])), init("mean", np.float32([0, 1, 2])),
             init("var", np.float32([1, 2, 4]))]
    m = model(nodes, [vi("x", T.FLOAT, [1, 3, 4]), vi("g", T.FLOAT, [3])],
              [vi("y", T.FLOAT, [1, 3, 4])], inits=inits)
    return m, {"x": np.arange(12, dtype=np.float32).reshape(1, 3, 4),
               "g": np.float32([1, -2, 0.5])}


# --- panics ------------------------------------------------------------------------------


@case("conv_gather_empty", "strided Conv longer than its input gives an empty axis; Gather panics on it")
def conv_gather_empty():
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["c"], strides=[128]),
        helper.make_node("Gather", ["c", "idx"], ["y"], axis=2),
    ]
    inits = [init("w", weights(8, 1, 256)), init("idx", np.array(0, np.int64))]
    m = model(nodes, [vi("x", T.FLOAT, ["batch", 1, "n"])], [vi("y", T.FLOAT, ["batch", 8])],
              inits=inits)
    return m, {"x": np.ones((1, 1, 1), np.float32)}


@case("gather_out_of_range", "Gather with an index past the axis panics instead of failing")
def gather_out_of_range():
    node = helper.make_node("Gather", ["x", "idx"], ["y"], axis=0)
    m = model([node], [vi("x", T.FLOAT, [3]), vi("idx", T.INT64, [1])], [vi("y", T.FLOAT, [1])])
    return m, {"x": np.float32([1, 2, 3]), "idx": np.array([5], np.int64)}


@case("onehot_out_of_range", "OneHot with constant depth and an index past it panics")
def onehot_out_of_range():
    node = helper.make_node("OneHot", ["idx", "depth", "values"], ["y"], axis=-1)
    inits = [init("depth", np.array(3, np.int64)), init("values", np.float32([0, 1]))]
    m = model([node], [vi("idx", T.INT64, [2])], [vi("y", T.FLOAT, [2, 3])], inits=inits)
    return m, {"idx": np.array([1, 7], np.int64)}


# --- INT64 casts (issue 14 reported 2^40+5 -> 5) -------------------------------------------

BIG = np.array([2**40 + 5, -(2**40) - 7, 2**62 + 1], np.int64)


def cast_one(opset):
    node = helper.make_node("Cast", ["x"], ["y"], to=T.INT64)
    return model([node], [vi("x", T.INT64, [3])], [vi("y", T.INT64, [3])], opset=opset), {"x": BIG}


for _opset in (13, 17, 19, 21):
    case(f"cast_int64_op{_opset}", f"no-op Cast(to=INT64) of INT64 at opset {_opset}")(
        lambda o=_opset: cast_one(o))


@case("cast_int64_scalar", "no-op Cast(to=INT64) of an INT64 scalar")
def cast_int64_scalar():
    node = helper.make_node("Cast", ["x"], ["y"], to=T.INT64)
    m = model([node], [vi("x", T.INT64, [])], [vi("y", T.INT64, [])])
    return m, {"x": np.array(2**40 + 5, np.int64)}


@case("cast_int64_const", "Cast(to=INT64) of a Constant (folded at load), added to an input")
def cast_int64_const():
    nodes = [
        helper.make_node("Constant", [], ["c"], value=init("c_v", BIG)),
        helper.make_node("Cast", ["c"], ["cc"], to=T.INT64),
        helper.make_node("Add", ["x", "cc"], ["y"]),
    ]
    m = model(nodes, [vi("x", T.INT64, [3])], [vi("y", T.INT64, [3])])
    return m, {"x": np.array([0, 1, 2], np.int64)}


@case("cast_int64_after_add", "Add then Cast(to=INT64) of INT64")
def cast_int64_after_add():
    nodes = [
        helper.make_node("Add", ["x", "one"], ["s"]),
        helper.make_node("Cast", ["s"], ["y"], to=T.INT64),
    ]
    m = model(nodes, [vi("x", T.INT64, [3])], [vi("y", T.INT64, [3])],
              inits=[init("one", np.array([1], np.int64))])
    return m, {"x": BIG}


@case("cast_int64_shape", "Shape -> Mul(2^40) -> Cast(to=INT64): shape arithmetic past 2^32")
def cast_int64_shape():
    nodes = [
        helper.make_node("Shape", ["x"], ["s"]),
        helper.make_node("Mul", ["s", "k"], ["m"]),
        helper.make_node("Cast", ["m"], ["y"], to=T.INT64),
    ]
    m = model(nodes, [vi("x", T.FLOAT, ["n", 2])], [vi("y", T.INT64, [2])],
              inits=[init("k", np.array([2**40], np.int64))])
    return m, {"x": np.zeros((3, 2), np.float32)}


@case("cast_int64_from_float", "Cast(to=INT64) of FLOAT values past 2^32 (exact in f32)")
def cast_int64_from_float():
    node = helper.make_node("Cast", ["x"], ["y"], to=T.INT64)
    m = model([node], [vi("x", T.FLOAT, [3])], [vi("y", T.INT64, [3])])
    return m, {"x": np.float32([2.0**40, -(2.0**41), 2.0**62])}


# --- operators tract doesn't have (one each) ---------------------------------------------


@case("loop_missing", "Loop: not implemented")
def loop_missing():
    body = helper.make_graph(
        [helper.make_node("Add", ["acc_in", "one"], ["acc_out"]),
         helper.make_node("Identity", ["cond_in"], ["cond_out"])],
        "body", [vi("i", T.INT64, []), vi("cond_in", T.BOOL, []), vi("acc_in", T.FLOAT, [2])],
        [vi("cond_out", T.BOOL, []), vi("acc_out", T.FLOAT, [2])])
    nodes = [helper.make_node("Loop", ["trips", "", "x"], ["y"], body=body)]
    m = model(nodes, [vi("x", T.FLOAT, [2])], [vi("y", T.FLOAT, [2])],
              inits=[init("trips", np.array(3, np.int64)), init("one", np.float32([1, 1]))])
    return m, {"x": np.float32([0, 10])}


@case("ml_scaler_missing", "ai.onnx.ml.Scaler: not implemented (also OneHotEncoder, TreeEnsembleRegressor)")
def ml_scaler_missing():
    node = helper.make_node("Scaler", ["x"], ["y"], domain="ai.onnx.ml",
                            offset=[1.0, 2.0], scale=[2.0, 0.5])
    m = model([node], [vi("x", T.FLOAT, [1, 2])], [vi("y", T.FLOAT, [1, 2])],
              domains=[("ai.onnx.ml", 3)])
    return m, {"x": np.float32([[3, 4]])}


@case("domain_ignored", "com.microsoft.Relu (no such op) run as ai.onnx Relu: tract ignores node domains")
def domain_ignored():
    node = helper.make_node("Relu", ["x"], ["y"], domain="com.microsoft")
    m = model([node], [vi("x", T.FLOAT, [3])], [vi("y", T.FLOAT, [3])],
              domains=[("com.microsoft", 1)])
    return m, {"x": np.float32([-1, 0, 2])}


def main() -> int:
    if len(sys.argv) != 2:
        print(__doc__.strip().splitlines()[-1], file=sys.stderr)
        return 2
    out = Path(sys.argv[1])
    out.mkdir(parents=True, exist_ok=True)
    for name, (m, inputs, _) in CASES.items():
        onnx.save(m, out / f"{name}.onnx")
        np.savez(out / f"{name}.npz", **inputs)
        if name in REFS:
            onnx.save(REFS[name], out / f"{name}.ref.onnx")
    (out / "cases.json").write_text(json.dumps({n: w for n, (_, _, w) in CASES.items()}, indent=1) + "\n")
    print(f"{len(CASES)} cases in {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
