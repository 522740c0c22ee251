"""A corpus model moved to a newer opset by onnx's own version converter.

Run with the corpus python (onnx==1.23.2): `python export_convert.py OPSET BASE_ID OUT.onnx`.
"""

from __future__ import annotations

import sys

import onnx
from onnx import version_converter

import common


def main() -> None:
    opset, base_id, out = int(sys.argv[1]), sys.argv[2], sys.argv[3]
    model = onnx.load(str(common.model_path(base_id)))
    converted = version_converter.convert_version(model, opset)
    onnx.checker.check_model(converted, full_check=True)
    onnx.save(converted, out)


if __name__ == "__main__":
    main()
