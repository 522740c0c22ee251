"""Models quantized by ONNX Runtime's own quantizer (onnxruntime.quantization).

Run with the corpus python (onnxruntime==1.31.1):
`python export_quant.py RECIPE BASE_ID OUT.onnx`. Calibration reads the base model's
manifest inputs with other seeds than the references use.

u8 activations times s8 weights use 7-bit weights (`reduce_range`), as ONNX Runtime
advises for CPUs without VNNI: there its fused u8s8 kernels saturate 16-bit pair sums,
so the reference itself would depend on the CPU (measured on an AVX2 machine: the fused
QDQ Conv differed from the unfused graph in 11,269 of 16,384 values, by up to 57 steps).
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import numpy as np
from onnxruntime.quantization import (
    CalibrationDataReader,
    QuantFormat,
    QuantType,
    quantize_dynamic,
    quantize_static,
)
from onnxruntime.quantization.shape_inference import quant_pre_process

import common
import manifest


class Reader(CalibrationDataReader):
    def __init__(self, model: manifest.Model, count: int = 16) -> None:
        batch = 1
        self.items = iter(
            [model.inputs(np.random.default_rng(10_000 + k), batch) for k in range(count)]
        )

    def get_next(self):
        return next(self.items, None)


def main() -> None:
    recipe, base_id, out = sys.argv[1], sys.argv[2], sys.argv[3]
    base = manifest.by_id(base_id)
    src = common.model_path(base_id)
    with tempfile.TemporaryDirectory() as tmp:
        pre = Path(tmp) / "pre.onnx"
        quant_pre_process(str(src), str(pre), skip_symbolic_shape=True)
        if recipe == "static_qdq":
            quantize_static(
                str(pre), out, Reader(base), quant_format=QuantFormat.QDQ,
                activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, per_channel=True,
                reduce_range=True,
            )
        elif recipe == "static_qoperator":
            quantize_static(
                str(pre), out, Reader(base), quant_format=QuantFormat.QOperator,
                activation_type=QuantType.QUInt8, weight_type=QuantType.QUInt8,
            )
        elif recipe == "dynamic":
            quantize_dynamic(str(pre), out, weight_type=QuantType.QInt8, reduce_range=True)
        else:
            raise SystemExit(f"unknown recipe '{recipe}'")


if __name__ == "__main__":
    main()
