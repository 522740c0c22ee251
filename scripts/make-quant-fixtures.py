#!/usr/bin/env python3
"""Writes tests/fixtures/quant/ops/: small float models holding every op LRAI's quantizer
rewrites, with calibration and evaluation data (run by a developer, not by CI; the files
are committed). `crates/lrai-quant/tests/backends.rs` quantizes them in every mode and
checks the results on both backends against ONNX Runtime.

- convnet: Conv (with bias, without, depthwise), Relu and Clip(0, 6) after a Conv (folded
  into the output QuantizeLinear), MaxPool, Add of two activations, AveragePool, Resize
  (float between quantized ops), Concat, GlobalAveragePool, Flatten, Transpose, Gemm
  (transB 1 and 0, with bias), Unsqueeze, Squeeze, Reshape, MatMul with a constant weight.
- transformer: Gather from an embedding table, LayerNormalization, MatMuls with constant
  weights (3-D inputs), bias Adds, Reshape/Transpose into heads, the attention MatMuls of
  two activations with Softmax between them (after a 1/sqrt(d) Div in the first layer, with
  the query scaled beforehand in the second, so that static QDQ gives DequantizeLinear ->
  Softmax -> QuantizeLinear), residual Adds, an Erf GELU, ReduceMean and a Gemm (transB 1)
  head: two BERT layers in miniature.

Each case folder has `model.onnx`, `calib.npz` (32 samples), `eval.npz` (8 samples) and
`eval_outputs.npz`, the float model's outputs on the eval samples from ONNX Runtime.

Usage: .venv/bin/python scripts/make-quant-fixtures.py
"""
import shutil
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto as T
from onnx import helper, numpy_helper

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "tests" / "fixtures" / "quant" / "ops"
RNG = np.random.default_rng(1406)


def rnd(*shape, scale=1.0):
    return (RNG.standard_normal(shape) * scale).astype(np.float32)


def init(name, array):
    return numpy_helper.from_array(np.asarray(array), name)


def node(op, inputs, outputs, name, **attrs):
    return helper.make_node(op, inputs, outputs, name=name, **attrs)


def convnet():
    nodes = [
        node("Conv", ["x", "w1", "b1"], ["c1"], "conv1", pads=[1, 1, 1, 1]),
        node("Relu", ["c1"], ["r1"], "relu1"),
        node("MaxPool", ["r1"], ["p1"], "pool1", kernel_shape=[2, 2], strides=[2, 2]),
        node("Conv", ["p1", "w2", "b2"], ["c2"], "conv2", pads=[1, 1, 1, 1]),
        node("Clip", ["c2", "zero", "six"], ["k2"], "clip2"),
        node("Conv", ["k2", "w3"], ["c3"], "conv3_nobias"),
        node("Add", ["c3", "p1"], ["res"], "residual"),
        node("Conv", ["res", "w4", "b4"], ["dw"], "depthwise", group=8, pads=[1, 1, 1, 1]),
        node("Relu", ["dw"], ["dr"], "relu_dw"),
        node("AveragePool", ["dr"], ["ap"], "avgpool", kernel_shape=[2, 2], strides=[2, 2]),
        node("Resize", ["ap", "", "up_scales"], ["up"], "upsample", mode="nearest"),
        node("Concat", ["up", "res"], ["cat"], "concat", axis=1),
        node("GlobalAveragePool", ["cat"], ["gap"], "gap"),
        node("Flatten", ["gap"], ["gf"], "flatten_gap", axis=1),
        node("Transpose", ["cat"], ["tr"], "nhwc", perm=[0, 2, 3, 1]),
        node("Flatten", ["tr"], ["fl"], "flatten", axis=1),
        node("Gemm", ["fl", "wg1", "bg1"], ["g1"], "fc1", transB=1),
        node("Relu", ["g1"], ["gr"], "relu_fc1"),
        node("Unsqueeze", ["gr", "axis1"], ["us"], "unsqueeze"),
        node("Squeeze", ["us", "axis1"], ["sq"], "squeeze"),
        node("Reshape", ["sq", "shape_b32"], ["rs"], "reshape"),
        node("MatMul", ["rs", "wm"], ["mm"], "matmul"),
        node("Add", ["mm", "bm"], ["mmb"], "matmul_bias"),
        node("Add", ["mmb", "gf"], ["sum"], "join"),
        node("Gemm", ["sum", "wg2", "bg2"], ["logits"], "fc2"),
    ]
    inits = [
        init("w1", rnd(8, 3, 3, 3, scale=0.3)), init("b1", rnd(8, scale=0.1)),
        init("w2", rnd(8, 8, 3, 3, scale=0.15)), init("b2", rnd(8, scale=0.1)),
        init("zero", np.array(0.0, np.float32)), init("six", np.array(6.0, np.float32)),
        init("w3", rnd(8, 8, 1, 1, scale=0.4)),
        init("w4", rnd(8, 1, 3, 3, scale=0.4)), init("b4", rnd(8, scale=0.1)),
        init("up_scales", np.array([1, 1, 2, 2], np.float32)),
        init("wg1", rnd(32, 256, scale=0.08)), init("bg1", rnd(32, scale=0.1)),
        init("axis1", np.array([1], np.int64)), init("shape_b32", np.array([-1, 32], np.int64)),
        init("wm", rnd(32, 16, scale=0.2)), init("bm", rnd(16, scale=0.1)),
        init("wg2", rnd(16, 10, scale=0.3)), init("bg2", rnd(10, scale=0.1)),
    ]
    graph = helper.make_graph(nodes, "convnet", [helper.make_tensor_value_info("x", T.FLOAT, ["batch", 3, 8, 8])],
                              [helper.make_tensor_value_info("logits", T.FLOAT, ["batch", 10])], inits)
    data = lambda n: {"x": rnd(n, 3, 8, 8)}  # noqa: E731
    return graph, 17, data


def linear(x, w, b, out, name):
    return [node("MatMul", [x, w], [f"{out}_mm"], f"{name}/MatMul"),
            node("Add", [f"{out}_mm", b], [out], f"{name}/Add")]


def heads(x, out, perm, name):
    return [node("Reshape", [x, "heads_shape"], [f"{out}_r"], f"{name}/Reshape"),
            node("Transpose", [f"{out}_r"], [out], f"{name}/Transpose", perm=perm)]


def layer_norm(x, out, name):
    return node("LayerNormalization", [x, f"{name}_g", f"{name}_b"], [out], name, axis=-1, epsilon=1e-5)


def encoder_layer(x, out, p, prescaled):
    """A BERT layer. `prescaled`: the query is scaled before the scores MatMul (as some
    exports write it), so the quantized scores go straight into Softmax: DQ -> Softmax -> Q,
    issue 14's pattern; otherwise the scores are divided after it (BERT's export)."""
    nodes = linear(x, f"{p}wq", f"{p}bq", f"{p}q", f"{p}attention/query")
    nodes += linear(x, f"{p}wk", f"{p}bk", f"{p}k", f"{p}attention/key")
    nodes += linear(x, f"{p}wv", f"{p}bv", f"{p}v", f"{p}attention/value")
    query = f"{p}q"
    if prescaled:
        nodes.append(node("Mul", [query, "inv_sqrt_d"], [f"{p}q_scaled"], f"{p}attention/query_scale"))
        query = f"{p}q_scaled"
    nodes += heads(query, f"{p}qh", [0, 2, 1, 3], f"{p}attention/q_heads")
    nodes += heads(f"{p}k", f"{p}kh", [0, 2, 3, 1], f"{p}attention/k_heads")
    nodes += heads(f"{p}v", f"{p}vh", [0, 2, 1, 3], f"{p}attention/v_heads")
    nodes.append(node("MatMul", [f"{p}qh", f"{p}kh"], [f"{p}scores"], f"{p}attention/scores"))
    scores = f"{p}scores"
    if not prescaled:
        nodes.append(node("Div", [scores, "sqrt_d"], [f"{p}scaled"], f"{p}attention/scale"))
        scores = f"{p}scaled"
    nodes += [node("Softmax", [scores], [f"{p}probs"], f"{p}attention/softmax", axis=-1),
              node("MatMul", [f"{p}probs", f"{p}vh"], [f"{p}ctx"], f"{p}attention/context"),
              node("Transpose", [f"{p}ctx"], [f"{p}ctx_t"], f"{p}attention/merge/Transpose", perm=[0, 2, 1, 3]),
              node("Reshape", [f"{p}ctx_t", "merge_shape"], [f"{p}ctx_m"], f"{p}attention/merge/Reshape")]
    nodes += linear(f"{p}ctx_m", f"{p}wo", f"{p}bo", f"{p}att", f"{p}attention/output")
    nodes += [node("Add", [f"{p}att", x], [f"{p}r1"], f"{p}attention/residual"),
              layer_norm(f"{p}r1", f"{p}ln1", f"{p}ln1")]
    nodes += linear(f"{p}ln1", f"{p}w1", f"{p}b1", f"{p}f1", f"{p}ffn/up")
    nodes += [node("Div", [f"{p}f1", "sqrt2"], [f"{p}f1s"], f"{p}ffn/gelu/Div"),
              node("Erf", [f"{p}f1s"], [f"{p}f1e"], f"{p}ffn/gelu/Erf"),
              node("Add", [f"{p}f1e", "one"], [f"{p}f1p"], f"{p}ffn/gelu/Add"),
              node("Mul", [f"{p}f1", f"{p}f1p"], [f"{p}f1m"], f"{p}ffn/gelu/Mul"),
              node("Mul", [f"{p}f1m", "half"], [f"{p}gelu"], f"{p}ffn/gelu/Mul_1")]
    nodes += linear(f"{p}gelu", f"{p}w2", f"{p}b2", f"{p}f2", f"{p}ffn/down")
    nodes += [node("Add", [f"{p}f2", f"{p}ln1"], [f"{p}r2"], f"{p}ffn/residual"),
              layer_norm(f"{p}r2", out, f"{p}ln2")]
    return nodes


def layer_weights(p, d, hidden):
    inits = []
    for name, (k, n) in {"q": (d, d), "k": (d, d), "v": (d, d), "o": (d, d), "1": (d, hidden), "2": (hidden, d)}.items():
        inits += [init(f"{p}w{name}", rnd(k, n, scale=1 / np.sqrt(k))), init(f"{p}b{name}", rnd(n, scale=0.1))]
    for ln in ("ln1", "ln2"):
        inits += [init(f"{p}{ln}_g", 1 + rnd(d, scale=0.1)), init(f"{p}{ln}_b", rnd(d, scale=0.1))]
    return inits


def transformer():
    d, hidden, vocab, seq = 16, 32, 40, 8
    nodes = [node("Gather", ["emb", "ids"], ["e"], "embeddings/Gather"),
             node("Add", ["e", "pos"], ["h0"], "embeddings/Add"),
             layer_norm("h0", "ln0", "ln0")]
    nodes += encoder_layer("ln0", "h1", "layer0/", prescaled=False)
    nodes += encoder_layer("h1", "hidden", "layer1/", prescaled=True)
    nodes += [node("ReduceMean", ["hidden"], ["pooled"], "pool", axes=[1], keepdims=0),
              node("Gemm", ["pooled", "wp", "bp"], ["logits"], "classifier", transB=1)]
    inits = [init("emb", rnd(vocab, d)), init("pos", rnd(seq, d, scale=0.3)),
             init("heads_shape", np.array([0, 0, 2, d // 2], np.int64)),
             init("merge_shape", np.array([0, 0, d], np.int64)),
             init("sqrt_d", np.array(np.sqrt(d // 2), np.float32)),
             init("inv_sqrt_d", np.array(1 / np.sqrt(d // 2), np.float32)),
             init("sqrt2", np.array(np.sqrt(2), np.float32)),
             init("one", np.array(1.0, np.float32)), init("half", np.array(0.5, np.float32)),
             init("ln0_g", 1 + rnd(d, scale=0.1)), init("ln0_b", rnd(d, scale=0.1))]
    inits += layer_weights("layer0/", d, hidden) + layer_weights("layer1/", d, hidden)
    inits += [init("wp", rnd(4, d, scale=0.5)), init("bp", rnd(4, scale=0.1))]
    graph = helper.make_graph(nodes, "transformer", [helper.make_tensor_value_info("ids", T.INT64, ["batch", seq])],
                              [helper.make_tensor_value_info("hidden", T.FLOAT, ["batch", seq, d]),
                               helper.make_tensor_value_info("logits", T.FLOAT, ["batch", 4])], inits)
    data = lambda n: {"ids": RNG.integers(0, vocab, (n, seq)).astype(np.int64)}  # noqa: E731
    return graph, 17, data


def write(name, graph, opset, data):
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], ir_version=8,
                          producer_name="lrai-fixtures")
    onnx.checker.check_model(m, full_check=True)
    d = OUT / name
    if d.exists():
        shutil.rmtree(d)
    d.mkdir(parents=True)
    onnx.save(m, str(d / "model.onnx"))
    calib, evaluation = data(32), data(8)
    np.savez(d / "calib.npz", **calib)
    np.savez(d / "eval.npz", **evaluation)
    sess = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
    outs = sess.run(None, evaluation)
    np.savez(d / "eval_outputs.npz", **{o.name: v for o, v in zip(sess.get_outputs(), outs)})


def main():
    write("convnet", *convnet())
    write("transformer", *transformer())
    print(f"fixtures written to {OUT.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
