"""The datatype models of the suite and their values: `tests/fixtures/backend/dtypes_identity`
(one Identity per datatype, made by scripts/make-backend-fixtures.py) in Triton layouts, and
values at the edges of every datatype's range (the same as tests/wire_values/mod.rs).

| model | what |
|---|---|
| `dtypes` | every datatype, `max_batch_size: 0`, dims `[-1]` |
| `dtypes_typed` | the same without FP16 (gRPC typed `contents` have no field for it) |
| `dtypes_batch` | every datatype batched: dims `[1]`, `reshape []`, dynamic batching |
| `bf16_id` | BF16 Identity; ONNX Runtime only (tract has no BF16: UNAVAILABLE there) |
"""

from __future__ import annotations

import shutil
from pathlib import Path

import ml_dtypes
import numpy as np

ROOT = Path(__file__).resolve().parents[2]
BACKEND_FIXTURES = ROOT / "tests" / "fixtures" / "backend"

# suffix of x_<suffix>/y_<suffix> in the fixture -> KServe datatype
DATATYPES = {
    "bool": "BOOL", "uint8": "UINT8", "uint16": "UINT16", "uint32": "UINT32", "uint64": "UINT64",
    "int8": "INT8", "int16": "INT16", "int32": "INT32", "int64": "INT64",
    "float16": "FP16", "float32": "FP32", "float64": "FP64", "string": "BYTES",
}
CONFIG_TYPE = {dt: f"TYPE_{dt}" for dt in DATATYPES.values()} | {"BYTES": "TYPE_STRING"}
MODELS = ["dtypes", "dtypes_typed", "dtypes_batch"]
ORT_ONLY = {"bf16_id": "tract has no BF16: the model is UNAVAILABLE on tract, with the reason"}

INF = float("inf")
NAN = float("nan")


def edge_values() -> dict[str, np.ndarray]:
    """Eight values per datatype at the edges of its range: integers at both limits and
    beyond 2^32 and 2^53, UINT64 beyond 2^63, FP64 that FP32 can't hold, floats at max,
    subnormal, -0, +-inf and NaN, BYTES with NULs, multi-byte UTF-8, quotes, a long one."""
    return {
        "bool": np.array([True, False, True, True, False, False, True, False]),
        "uint8": np.array([0, 1, 127, 128, 200, 254, 255, 7], np.uint8),
        "uint16": np.array([0, 1, 255, 256, 32768, 65534, 65535, 7], np.uint16),
        "uint32": np.array([0, 1, 65536, 2147483651, 4294967294, 2**32 - 1, 7, 16777217], np.uint32),
        "uint64": np.array([0, 1, 2**53 + 1, 2**63, 2**63 + 1, 2**64 - 2, 2**64 - 1, 2**32 + 5],
                           np.uint64),
        "int8": np.array([-128, -127, -1, 0, 1, 126, 127, 7], np.int8),
        "int16": np.array([-32768, -32767, -1, 0, 1, 32766, 32767, 7], np.int16),
        "int32": np.array([-2**31, -2**31 + 1, -1, 0, 1, 7, 2**31 - 2, 2**31 - 1], np.int32),
        "int64": np.array([-2**63, -2**63 + 1, -(2**40) - 7, -1, 2**40 + 5, 2**53 + 1, 2**63 - 2,
                           2**63 - 1], np.int64),
        "float16": np.array([65504, -65504, 2.0**-24, 2.0**-14, -0.0, INF, -INF, NAN], np.float16),
        "float32": np.array([np.finfo(np.float32).max, np.finfo(np.float32).min,
                             np.float32(2.0**-149), -0.0, INF, -INF, NAN, 0.1], np.float32),
        "float64": np.array([0.1, 1e300, 1 + 2.0**-40, 5e-324, -1 / 3, -0.0, -INF, NAN], np.float64),
        "string": np.array([b"a\0b", b"", "\u00fcn\u00ef \u2713 \U0010ffff".encode(), b"x" * 300,
                            b"\0", b'comma, "quote" \\back', b"\n\t\r", b"end"], dtype=np.object_),
    }


def binary_strings() -> np.ndarray:
    """BYTES that are not UTF-8 (element 1 is the first), which only binary wires carry."""
    return np.array([b"ok", b"\xff\xfe binary", b"\0\0", b"\xc3", b"", b"\x80\x00\xc0\xaf",
                     "\u00fcn\u00ef".encode(), b"\xf5" * 5], dtype=np.object_)


def bf16_values() -> np.ndarray:
    return np.array([1.0, -0.0, 3.3895314e38, -3.3895314e38, 2.0**-133, INF, -INF, NAN, 0.1],
                    dtype=ml_dtypes.bfloat16)


def same(got: np.ndarray, want: np.ndarray, what: str) -> None:
    """Equal datatype, shape and bytes (bit for bit: -0.0, NaN); BYTES compared as bytes
    whether the client returned str (JSON) or bytes."""
    assert got.shape == want.shape, f"{what}: shape {got.shape}, sent {want.shape}"
    if want.dtype == np.object_:
        as_bytes = [x.encode() if isinstance(x, str) else bytes(x) for x in got.ravel()]
        assert as_bytes == list(want.ravel()), f"{what}: {as_bytes} != {list(want.ravel())}"
        return
    assert got.dtype == want.dtype, f"{what}: dtype {got.dtype}, sent {want.dtype}"
    assert got.tobytes() == want.tobytes(), f"{what}: got {got}, sent {want}"


def _config(name: str, names: list[str], batch: bool) -> str:
    shape = "dims: [ 1 ] reshape: { shape: [ ] }" if batch else "dims: [ -1 ]"

    def tensors(prefix):
        return ",\n".join(f'  {{ name: "{prefix}_{n}" data_type: {CONFIG_TYPE[DATATYPES[n]]} {shape} }}'
                          for n in names)

    batching = ("max_batch_size: 32\ndynamic_batching { max_queue_delay_microseconds: 20000 }\n"
                if batch else "max_batch_size: 0\n")
    return (f'name: "{name}"\n{batching}input [\n{tensors("x")}\n]\n'
            f'output [\n{tensors("y")}\n]\n')


def _subset(dst: Path, keep: list[str]) -> None:
    import onnx

    m = onnx.load(str(BACKEND_FIXTURES / "dtypes_identity" / "model.onnx"))
    g = m.graph
    for field in (g.input, g.output):
        kept = [v for v in field if v.name[2:] in keep]
        del field[:]
        field.extend(kept)
    nodes = [n for n in g.node if n.input[0][2:] in keep]
    del g.node[:]
    g.node.extend(nodes)
    onnx.checker.check_model(m)
    dst.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(m, str(dst))


def add_dtype_models(repo: Path) -> None:
    every = list(DATATYPES)
    typed = [n for n in every if n != "float16"]
    for name, names, batch in (("dtypes", every, False), ("dtypes_typed", typed, False),
                               ("dtypes_batch", every, True)):
        _subset(repo / name / "1" / "model.onnx", names)
        (repo / name / "config.pbtxt").write_text(_config(name, names, batch))
    (repo / "bf16_id" / "1").mkdir(parents=True)
    shutil.copyfile(BACKEND_FIXTURES / "bf16_identity" / "model.onnx",
                    repo / "bf16_id" / "1" / "model.onnx")
    (repo / "bf16_id" / "config.pbtxt").write_text(
        'name: "bf16_id"\nmax_batch_size: 0\n'
        'input [ { name: "x" data_type: TYPE_BF16 dims: [ -1 ] } ]\n'
        'output [ { name: "y" data_type: TYPE_BF16 dims: [ -1 ] } ]\n')
