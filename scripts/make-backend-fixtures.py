#!/usr/bin/env python3
"""Writes tests/fixtures/backend/: small graphs for the defects of issue 14, each with
ONNX Runtime reference outputs (run by a developer, not by CI; the outputs are committed).

Each case is a folder with `model.onnx` and one or more input sets `<set>/{inputs,outputs}.npz`
(outputs computed here by ONNX Runtime), plus `case.json` saying what the case is about.

- recurrent state passed in and out as ordinary tensors (LSTM, GRU, RNN, Scan, Loop): the same
  inputs must give the same outputs however often they run and whatever ran in between;
- every dtype through Identity and no-op Casts, with values that use the full range;
- QDQ graphs (the DQ -> Softmax -> Q pattern, and ONNX Runtime's quantizer output);
- declared shapes ONNX Runtime accepts: Paddle's `?` dims, shared dim_params that disagree,
  scalars sent as [1];
- exports tract once failed to load: Squeeze without axes (opset 11), If with Squeeze branches.

- models the CLI tests need: tract panicking at load and at run, and one ONNX Runtime
  can't load (`--cli-only` writes just these).

Usage: .venv/bin/python scripts/make-backend-fixtures.py [--cli-only]
"""
import json
import shutil
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto as T
from onnx import helper, numpy_helper

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "tests" / "fixtures" / "backend"
RNG = np.random.default_rng(14)


def model(nodes, inputs, outputs, opset=17, inits=(), name="g"):
    m = helper.make_model(helper.make_graph(nodes, name, inputs, outputs, list(inits)),
                          opset_imports=[helper.make_opsetid("", opset)], ir_version=8,
                          producer_name="lrai-fixtures")
    onnx.checker.check_model(m, full_check=True)
    return m


def vi(name, dtype, dims):
    return helper.make_tensor_value_info(name, dtype, dims)


def init(name, array):
    return numpy_helper.from_array(np.asarray(array), name)


def rnd(*shape):
    return RNG.standard_normal(shape).astype(np.float32)


def save_npz(path, arrays):
    # Object (string) arrays become bytes arrays so np.load reads them without pickle.
    fixed = {}
    for k, v in arrays.items():
        if v.dtype == object:
            v = np.array([x.encode() if isinstance(x, str) else x for x in v.ravel()]).reshape(v.shape)
        fixed[k] = v
    np.savez(path, **fixed)


def write_case(name, m, sets, about, expect=None, optimize=True):
    """Saves the model and runs every input set through ONNX Runtime for the reference.

    QDQ graphs get references from the unoptimized graph (`optimize=False`): the float
    arithmetic between each DequantizeLinear and QuantizeLinear as written. ONNX Runtime's
    fused integer kernels land up to 8 output steps from it on these graphs."""
    d = OUT / name
    if d.exists():
        shutil.rmtree(d)
    d.mkdir(parents=True)
    onnx.save(m, str(d / "model.onnx"))
    options = ort.SessionOptions()
    if not optimize:
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    sess = ort.InferenceSession(m.SerializeToString(), options, providers=["CPUExecutionProvider"])
    names = [o.name for o in sess.get_outputs()]
    for set_name, feeds in sets.items():
        outs = sess.run(None, feeds)
        (d / set_name).mkdir()
        save_npz(d / set_name / "inputs.npz", feeds)
        save_npz(d / set_name / "outputs.npz", dict(zip(names, outs)))
    (d / "case.json").write_text(json.dumps({"about": about, **(expect or {})}, indent=2) + "\n")


# --- recurrent state -------------------------------------------------------------------

def recurrent(op, gates, hidden=8, feat=4, extra=None):
    """One recurrent layer whose state comes in as inputs and goes out as outputs (silero VAD)."""
    ins = [vi("x", T.FLOAT, ["seq", "batch", feat]), vi("h0", T.FLOAT, [1, "batch", hidden])]
    node_in = ["x", "W", "R", "B", "", "h0"]
    outs = [vi("y", T.FLOAT, ["seq", 1, "batch", hidden]), vi("hn", T.FLOAT, [1, "batch", hidden])]
    node_out = ["y", "hn"]
    if op == "LSTM":
        ins.append(vi("c0", T.FLOAT, [1, "batch", hidden]))
        node_in.append("c0")
        outs.append(vi("cn", T.FLOAT, [1, "batch", hidden]))
        node_out.append("cn")
    inits = [init("W", rnd(1, gates * hidden, feat) * 0.5), init("R", rnd(1, gates * hidden, hidden) * 0.5),
             init("B", rnd(1, 2 * gates * hidden) * 0.1)]
    node = helper.make_node(op, node_in, node_out, hidden_size=hidden, name=f"{op.lower()}_0", **(extra or {}))
    m = model([node], ins, outs, opset=14, inits=inits)

    def feeds(seq, batch, scale):
        f = {"x": rnd(seq, batch, feat) * scale, "h0": rnd(1, batch, hidden) * scale}
        if op == "LSTM":
            f["c0"] = rnd(1, batch, hidden) * scale
        return f
    return m, {"a": feeds(5, 1, 1.0), "b": feeds(3, 1, 2.0), "c": feeds(5, 4, 0.5)}


def scan_state():
    """Scan carrying a running state: s_t = 0.5 s_{t-1} + x_t, emitting every s_t."""
    body = helper.make_graph(
        [helper.make_node("Mul", ["s_in", "half"], ["s_half"]),
         helper.make_node("Add", ["s_half", "x_t"], ["s_out"]),
         helper.make_node("Identity", ["s_out"], ["y_t"])],
        "body", [vi("s_in", T.FLOAT, [4]), vi("x_t", T.FLOAT, [4])],
        [vi("s_out", T.FLOAT, [4]), vi("y_t", T.FLOAT, [4])],
        [init("half", np.array([0.5], np.float32))])
    node = helper.make_node("Scan", ["s0", "xs"], ["s_final", "ys"], num_scan_inputs=1, body=body, name="scan_0")
    m = model([node], [vi("s0", T.FLOAT, [4]), vi("xs", T.FLOAT, ["steps", 4])],
              [vi("s_final", T.FLOAT, [4]), vi("ys", T.FLOAT, ["steps", 4])], opset=16)
    return m, {"a": {"s0": rnd(4), "xs": rnd(6, 4)}, "b": {"s0": rnd(4) * 3, "xs": rnd(2, 4)}}


def loop_state(reads_index=True):
    """Loop with a trip count input and a carried vector: v = 0.9 v + x (+ 0.1 i), emitting each v."""
    index_nodes = [helper.make_node("Cast", ["i"], ["i_f"], to=T.FLOAT),
                   helper.make_node("Mul", ["i_f", "tenth"], ["i_t"]),
                   helper.make_node("Add", ["v_kx", "i_t"], ["v_out"])] if reads_index else [
                   helper.make_node("Identity", ["v_kx"], ["v_out"])]
    body = helper.make_graph(
        [helper.make_node("Identity", ["cond_in"], ["cond_out"]),
         helper.make_node("Mul", ["v_in", "k"], ["v_k"]),
         helper.make_node("Add", ["v_k", "x"], ["v_kx"])] + index_nodes +
        [helper.make_node("Identity", ["v_out"], ["v_scan"])],
        "body", [vi("i", T.INT64, []), vi("cond_in", T.BOOL, []), vi("v_in", T.FLOAT, [3])],
        [vi("cond_out", T.BOOL, []), vi("v_out", T.FLOAT, [3]), vi("v_scan", T.FLOAT, [3])],
        [init("k", np.array([0.9], np.float32)), init("tenth", np.array([0.1], np.float32))])
    node = helper.make_node("Loop", ["trips", "", "v0"], ["v_final", "vs"], body=body, name="loop_0")
    m = model([node], [vi("trips", T.INT64, []), vi("v0", T.FLOAT, [3]), vi("x", T.FLOAT, [3])],
              [vi("v_final", T.FLOAT, [3]), vi("vs", T.FLOAT, ["trips_out", 3])], opset=16)
    return m, {"a": {"trips": np.array(4, np.int64), "v0": rnd(3), "x": rnd(3)},
               "b": {"trips": np.array(2, np.int64), "v0": rnd(3) * 5, "x": rnd(3)}}


# --- dtypes ------------------------------------------------------------------------------

FULL_RANGE = {
    "bool": np.array([True, False, True]),
    "uint8": np.array([0, 1, 255], np.uint8),
    "uint16": np.array([0, 1, 65535], np.uint16),
    "uint32": np.array([0, 2**31 + 3, 2**32 - 1], np.uint32),
    "uint64": np.array([0, 2**63 + 1, 2**64 - 1], np.uint64),
    "int8": np.array([-128, 0, 127], np.int8),
    "int16": np.array([-32768, 0, 32767], np.int16),
    "int32": np.array([-2**31, 2**31 - 1, 7], np.int32),
    "int64": np.array([2**40 + 5, -(2**40) - 7, 2**63 - 1, -(2**63)], np.int64),
    "float16": np.array([65504, -65504, 5.96e-8, np.inf, -0.0, 6.1035e-5], np.float16),
    "float32": np.array([3.4028235e38, 1.4e-45, -0.0, np.inf, -np.inf, 0.1], np.float32),
    "float64": np.array([0.1, 1e300, 1 + 2.0**-40, 5e-324, -1e-300], np.float64),
    "string": np.array(["a\0b", "", "ünï", "x" * 300], dtype=object),
}
ONNX_TYPE = {"bool": T.BOOL, "uint8": T.UINT8, "uint16": T.UINT16, "uint32": T.UINT32, "uint64": T.UINT64,
             "int8": T.INT8, "int16": T.INT16, "int32": T.INT32, "int64": T.INT64, "float16": T.FLOAT16,
             "float32": T.FLOAT, "float64": T.DOUBLE, "string": T.STRING}


def dtypes_identity():
    nodes, ins, outs, feeds = [], [], [], {}
    for name, arr in FULL_RANGE.items():
        nodes.append(helper.make_node("Identity", [f"x_{name}"], [f"y_{name}"]))
        ins.append(vi(f"x_{name}", ONNX_TYPE[name], ["n"]))
        outs.append(vi(f"y_{name}", ONNX_TYPE[name], ["n"]))
        feeds[f"x_{name}"] = arr
    return model(nodes, ins, outs), {"a": feeds}


def noop_casts():
    """Cast to the type a tensor already has (common in exported graphs), and widening casts."""
    pairs = [("int64", T.INT64), ("uint64", T.UINT64), ("float64", T.DOUBLE), ("int32", T.INT32),
             ("float16", T.FLOAT16), ("uint32", T.UINT32)]
    nodes, ins, outs, feeds = [], [], [], {}
    for name, to in pairs:
        nodes.append(helper.make_node("Cast", [f"x_{name}"], [f"y_{name}"], to=to, name=f"cast_{name}"))
        ins.append(vi(f"x_{name}", ONNX_TYPE[name], ["n"]))
        outs.append(vi(f"y_{name}", ONNX_TYPE[name], ["n"]))
        feeds[f"x_{name}"] = FULL_RANGE[name]
    nodes.append(helper.make_node("Cast", ["x_int32"], ["wide_int64"], to=T.INT64, name="cast_widen"))
    outs.append(vi("wide_int64", T.INT64, ["n"]))
    nodes.append(helper.make_node("Add", ["x_int64", "one"], ["plus_one"], name="add_i64"))
    outs.append(vi("plus_one", T.INT64, ["n"]))
    feeds["x_int64"] = np.array([2**40 + 5, -(2**40) - 7, 2**33, -5], np.int64)
    feeds["x_int32"] = np.array([-2**31, 2**31 - 1, 7, 0], np.int32)
    feeds = {k: (v if len(v) == 4 else np.resize(v, 4)) for k, v in feeds.items()}
    return model(nodes, ins, outs, inits=[init("one", np.array([1], np.int64))]), {"a": feeds}


def bf16_identity():
    m = model([helper.make_node("Identity", ["x"], ["y"])], [vi("x", T.BFLOAT16, ["n"])],
              [vi("y", T.BFLOAT16, ["n"])])
    return m


# --- QDQ ---------------------------------------------------------------------------------

def qdq_softmax(zero_point):
    q = lambda i, o, s, z: helper.make_node("QuantizeLinear", [i, s, z], [o])  # noqa: E731
    dq = lambda i, o, s, z: helper.make_node("DequantizeLinear", [i, s, z], [o])  # noqa: E731
    nodes = [q("x", "xq", "s_in", "z_in"), dq("xq", "xd", "s_in", "z_in"),
             helper.make_node("Softmax", ["xd"], ["p"], axis=-1),
             q("p", "pq", "s_out", "z_out"), dq("pq", "y", "s_out", "z_out")]
    inits = [init("s_in", np.array(0.2082, np.float32)), init("z_in", np.array(114, np.uint8)),
             init("s_out", np.array(1 / 256, np.float32)), init("z_out", np.array(zero_point, np.uint8))]
    m = model(nodes, [vi("x", T.FLOAT, [1, 2, 4, 8])], [vi("y", T.FLOAT, [1, 2, 4, 8])], opset=18, inits=inits)
    return m, {"a": {"x": rnd(1, 2, 4, 8) * 3}, "b": {"x": rnd(1, 2, 4, 8)}}


def float_convnet():
    """A float model with the ops quantizers rewrite: Conv, Relu, MaxPool, Concat, Gemm, Softmax..."""
    nodes = [
        helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c1"], ["r1"]),
        helper.make_node("MaxPool", ["r1"], ["p1"], kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("Conv", ["p1", "w2", "b2"], ["c2"], pads=[1, 1, 1, 1]),
        helper.make_node("Sigmoid", ["c2"], ["s2"]),
        helper.make_node("Mul", ["c2", "s2"], ["m2"]),
        helper.make_node("Concat", ["p1", "m2"], ["cat"], axis=1),
        helper.make_node("AveragePool", ["cat"], ["ap"], kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("Add", ["ap", "ap"], ["ap2"]),
        helper.make_node("Transpose", ["ap2"], ["tr"], perm=[0, 2, 3, 1]),
        helper.make_node("Flatten", ["tr"], ["flat"], axis=1),
        helper.make_node("Gemm", ["flat", "wf", "bf"], ["logits"], transB=1),
        helper.make_node("MatMul", ["logits", "wm"], ["mm"]),
        helper.make_node("Softmax", ["mm"], ["probs"], axis=-1),
    ]
    inits = [init("w1", rnd(4, 3, 3, 3) * 0.4), init("b1", rnd(4) * 0.1), init("w2", rnd(4, 4, 3, 3) * 0.3),
             init("b2", rnd(4) * 0.1), init("wf", rnd(6, 8 * 2 * 2) * 0.3), init("bf", rnd(6) * 0.1),
             init("wm", rnd(6, 5) * 0.5)]
    return model(nodes, [vi("x", T.FLOAT, ["batch", 3, 8, 8])], [vi("probs", T.FLOAT, ["batch", 5])],
                 opset=17, inits=inits)


def ort_quantized(float_model, per_channel, activation, weight):
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, quantize_static

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.items = iter([{"x": rnd(1, 3, 8, 8)} for _ in range(16)])

        def get_next(self):
            return next(self.items, None)

    tmp = OUT / "_float.onnx"
    dst = OUT / "_q.onnx"
    onnx.save(float_model, str(tmp))
    # 7-bit weights: without VNNI, ONNX Runtime's fused u8 x s8 kernels saturate 8-bit ones, and
    # the reference would then depend on the CPU that made it.
    quantize_static(str(tmp), str(dst), Reader(), quant_format=QuantFormat.QDQ, per_channel=per_channel,
                    activation_type=activation, weight_type=weight, reduce_range=True)
    m = onnx.load(str(dst))
    tmp.unlink()
    dst.unlink()
    return m


# --- declared shapes ---------------------------------------------------------------------

def paddle_free_dims():
    """Paddle writes `?` for every free dim; they are independent, not one symbol."""
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]), helper.make_node("Relu", ["c"], ["y"])]
    m = model(nodes, [vi("x", T.FLOAT, ["?", 3, "?", "?"])], [vi("y", T.FLOAT, ["?", 2, "?", "?"])],
              inits=[init("w", rnd(2, 3, 3, 3))])
    return m, {"a": {"x": rnd(1, 3, 48, 192)}, "b": {"x": rnd(2, 3, 16, 16)}}


def shared_symbol_mismatch():
    """Two inputs share `n`; ONNX Runtime runs them with different sizes, so LRAI must too."""
    nodes = [helper.make_node("Relu", ["x"], ["a"]), helper.make_node("Neg", ["y"], ["b"])]
    m = model(nodes, [vi("x", T.FLOAT, ["n", 4]), vi("y", T.FLOAT, ["n", 2])],
              [vi("a", T.FLOAT, ["n", 4]), vi("b", T.FLOAT, ["n", 2])])
    return m, {"a": {"x": rnd(2, 4), "y": rnd(3, 2)}}


def scalar_input():
    nodes = [helper.make_node("Mul", ["s", "x"], ["y"])]
    m = model(nodes, [vi("s", T.FLOAT, []), vi("x", T.FLOAT, [3])], [vi("y", T.FLOAT, [3])])
    return m, {"scalar": {"s": np.array(2.5, np.float32), "x": rnd(3)},
               "one": {"s": np.array([2.5], np.float32), "x": rnd(3)}}


# --- exports tract had trouble with ------------------------------------------------------

def squeeze_no_axes():
    """Opset 11 Squeeze without `axes`: squeeze every size-1 dim (a PyTorch 1.11 GRU export)."""
    nodes = [helper.make_node("Squeeze", ["x"], ["sq"]), helper.make_node("Relu", ["sq"], ["y"])]
    m = model(nodes, [vi("x", T.FLOAT, [1, 5, 1, 3])], [vi("y", T.FLOAT, [5, 3])], opset=11)
    return m, {"a": {"x": rnd(1, 5, 1, 3)}}


def if_squeeze(opset):
    """An If on a condition computed from the input's shape, with Squeeze in both branches."""
    axes = init("ax", np.array([0], np.int64))
    then_g = helper.make_graph([helper.make_node("Squeeze", ["x", "ax"], ["t"])], "then", [],
                               [vi("t", T.FLOAT, None)])
    else_g = helper.make_graph([helper.make_node("Squeeze", ["x2", "ax"], ["e"]),
                                ], "else", [], [vi("e", T.FLOAT, None)])
    nodes = [helper.make_node("Shape", ["x"], ["shp"]),
             helper.make_node("Gather", ["shp", "one"], ["len"], axis=0),
             helper.make_node("Equal", ["len", "n512"], ["is512"]),
             helper.make_node("Mul", ["x", "two"], ["x2"]),
             helper.make_node("If", ["is512"], ["sq"], then_branch=then_g, else_branch=else_g),
             helper.make_node("Relu", ["sq"], ["y"])]
    inits = [axes, init("one", np.array(1, np.int64)), init("n512", np.array(512, np.int64)),
             init("two", np.array([2.0], np.float32))]
    m = model(nodes, [vi("x", T.FLOAT, [1, "len"])], [vi("y", T.FLOAT, ["len"])], opset=opset, inits=inits)
    return m, {"a": {"x": rnd(1, 512)}, "b": {"x": rnd(1, 256)}}


def if_on_value():
    """silero VAD's pattern: a scalar input's value picks a branch, and the branches give
    different ranks ([n] vs [1, n]), which tract only takes once the value is known."""
    then_g = helper.make_graph([helper.make_node("Mul", ["x", "two"], ["t"])], "then", [],
                               [vi("t", T.FLOAT, None)])
    else_g = helper.make_graph([helper.make_node("Unsqueeze", ["x", "ax"], ["e"])], "else", [],
                               [vi("e", T.FLOAT, None)])
    nodes = [helper.make_node("Equal", ["sr", "k16"], ["is16"]),
             helper.make_node("If", ["is16"], ["y"], then_branch=then_g, else_branch=else_g)]
    inits = [init("k16", np.array(16000, np.int64)), init("two", np.array([2.0], np.float32)),
             init("ax", np.array([0], np.int64))]
    m = model(nodes, [vi("x", T.FLOAT, ["n"]), vi("sr", T.INT64, [])], [vi("y", T.FLOAT, ["?"])], opset=15,
              inits=inits)
    return m, {"a16k": {"x": rnd(5), "sr": np.array(16000, np.int64)},
               "b8k": {"x": rnd(3), "sr": np.array(8000, np.int64)}}


def batchnorm_computed():
    """BatchNormalization whose mean and variance come in as inputs (tf2onnx's layer norm
    computes them): tract needs constant parameters, LRAI writes it as arithmetic."""
    node = helper.make_node("BatchNormalization", ["x", "scale", "bias", "mean", "var"], ["y"], epsilon=1e-3)
    m = model([node], [vi("x", T.FLOAT, ["n", 3, "l"]), vi("mean", T.FLOAT, [3]), vi("var", T.FLOAT, [3])],
              [vi("y", T.FLOAT, ["n", 3, "l"])], opset=15,
              inits=[init("scale", rnd(3)), init("bias", rnd(3))])
    return m, {"a": {"x": rnd(2, 3, 4), "mean": rnd(3), "var": np.abs(rnd(3)) + 0.1},
               "b": {"x": rnd(1, 3, 7), "mean": rnd(3), "var": np.abs(rnd(3)) + 0.5}}


# --- models the CLI tests need (tests/cli.rs) ----------------------------------------------

def write_inputs_only(name, m, sets, about, outputs=None):
    """A case ONNX Runtime can't give references for: the model, its input sets, and the
    expected outputs where they are computed here (`outputs`: set -> arrays)."""
    d = OUT / name
    if d.exists():
        shutil.rmtree(d)
    d.mkdir(parents=True)
    onnx.save(m, str(d / "model.onnx"))
    for set_name, feeds in sets.items():
        (d / set_name).mkdir()
        save_npz(d / set_name / "inputs.npz", feeds)
        if outputs and set_name in outputs:
            save_npz(d / set_name / "outputs.npz", outputs[set_name])
    (d / "case.json").write_text(json.dumps({"about": about}, indent=2) + "\n")


def cli_cases():
    rng = np.random.default_rng(1414)
    # tract constant-folds Gather(c, 5) at load and panics on the index
    # (tract-core gather.rs); ONNX Runtime skips the folding and fails at run.
    nodes = [helper.make_node("Gather", ["c", "idx"], ["g"], axis=0, name="gather_const"),
             helper.make_node("Add", ["x", "g"], ["y"], name="add")]
    m = model(nodes, [vi("x", T.FLOAT, [1])], [vi("y", T.FLOAT, [1])],
              inits=[init("c", np.float32([1, 2, 3])), init("idx", np.array([5], np.int64))])
    write_inputs_only("tract_panic_load", m, {"a": {"x": np.float32([1])}},
                      "tract panics while loading (constant Gather index out of range)")
    # A strided Conv longer than its input gives tract an empty axis, and Gather panics on
    # it at run time (n = 1); ONNX Runtime says the input shape is invalid. n = 300 runs.
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], strides=[128], name="conv"),
             helper.make_node("Gather", ["c", "idx"], ["y"], axis=2, name="gather_first")]
    w = rng.standard_normal((8, 1, 256)).astype(np.float32)
    m = model(nodes, [vi("x", T.FLOAT, ["batch", 1, "n"])], [vi("y", T.FLOAT, ["batch", 8])],
              inits=[init("w", w), init("idx", np.array(0, np.int64))])
    x300 = rng.standard_normal((1, 1, 300)).astype(np.float32)
    write_case("tract_panic_run", m, {"n300": {"x": x300}}, "tract panics running it at n = 1")
    (OUT / "tract_panic_run" / "n1").mkdir()
    save_npz(OUT / "tract_panic_run" / "n1" / "inputs.npz", {"x": np.ones((1, 1, 1), np.float32)})
    # ONNX Runtime has no INT16 kernel for Relu (opset 14+), tract has: auto falls back.
    m = model([helper.make_node("Relu", ["x"], ["y"], name="relu_i16")], [vi("x", T.INT16, ["n"])],
              [vi("y", T.INT16, ["n"])])
    x = np.array([-32768, -1, 0, 1, 32767], np.int16)
    write_inputs_only("ort_no_kernel", m, {"a": {"x": x}},
                      "ONNX Runtime can't load it (no INT16 Relu kernel); tract runs it",
                      outputs={"a": {"y": np.maximum(x, 0)}})


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    recurrent_about = "state passed in and out as tensors: same inputs, same outputs, every run"
    write_case("lstm_state", *recurrent("LSTM", 4), recurrent_about)
    write_case("gru_state", *recurrent("GRU", 3, extra={"linear_before_reset": 1}), recurrent_about)
    write_case("rnn_state", *recurrent("RNN", 1), recurrent_about)
    write_case("gru_reverse", *recurrent("GRU", 3, extra={"linear_before_reset": 1, "direction": "reverse"}),
               recurrent_about + " (reverse: tract ignores direction, so LRAI refuses it there)")
    write_case("scan_state", *scan_state(), recurrent_about)
    write_case("loop_state", *loop_state(), recurrent_about)
    write_case("loop_no_index", *loop_state(reads_index=False), recurrent_about + " (body ignores the index)")
    write_case("dtypes_identity", *dtypes_identity(), "every dtype through Identity, full-range values")
    write_case("noop_casts", *noop_casts(), "Cast to the same type keeps every bit (INT64 beyond 2^32)")
    d = OUT / "bf16_identity"
    d.mkdir(exist_ok=True)
    onnx.save(bf16_identity(), str(d / "model.onnx"))
    (d / "case.json").write_text(json.dumps({"about": "BF16 Identity (numpy has no bfloat16; tested in Rust)"}) + "\n")
    for zp in (0, 128):
        write_case(f"qdq_softmax_zp{zp}", *qdq_softmax(zp), "DQ -> Softmax -> Q must not saturate", optimize=False)
    f = float_convnet()
    calib_x = {"a": {"x": rnd(1, 3, 8, 8)}, "b4": {"x": rnd(4, 3, 8, 8)}}
    write_case("float_convnet", f, calib_x, "the float model behind the ort_qdq_* cases")
    from onnxruntime.quantization import QuantType
    for tag, pc, act, wt in [("u8s8_pc", True, QuantType.QUInt8, QuantType.QInt8),
                             ("s8s8", False, QuantType.QInt8, QuantType.QInt8),
                             ("u8u8", False, QuantType.QUInt8, QuantType.QUInt8)]:
        write_case(f"ort_qdq_{tag}", ort_quantized(f, pc, act, wt), calib_x,
                   "ONNX Runtime's quantize_static QDQ output", optimize=False)
    write_case("paddle_free_dims", *paddle_free_dims(), "`?` dims are independent")
    write_case("shared_symbol_mismatch", *shared_symbol_mismatch(), "a shared dim_param that disagrees: warn, run")
    write_case("scalar_input", *scalar_input(), "a scalar input accepts a one-element [1] tensor")
    write_case("squeeze_no_axes", *squeeze_no_axes(), "opset 11 Squeeze without axes")
    write_case("batchnorm_computed", *batchnorm_computed(), "BatchNormalization with computed parameters")
    write_case("if_on_value", *if_on_value(), "a scalar input's value picks the If branch (silero's sr)")
    for opset in (15, 18):
        write_case(f"if_squeeze_op{opset}", *if_squeeze(opset), "If with Squeeze branches, shape-derived condition")
    cli_cases()
    print(f"fixtures written to {OUT.relative_to(ROOT)}")


if __name__ == "__main__":
    import sys

    # --cli-only: just the CLI cases, leaving the others as committed.
    cli_cases() if sys.argv[1:] == ["--cli-only"] else main()
