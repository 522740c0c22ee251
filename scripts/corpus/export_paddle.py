"""Small Paddle networks saved with paddle.jit and converted by paddle2onnx.

Run in the paddle venv: `python export_paddle.py RECIPE OPSET OUT.onnx`. Free
dimensions come out as paddle2onnx writes them (`?`-style names), as in PaddleOCR's exports.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

import paddle
from paddle import nn
from paddle.static import InputSpec


class LstmClassifier(nn.Layer):
    def __init__(self) -> None:
        super().__init__()
        self.lstm = nn.LSTM(16, 32, num_layers=2)
        self.fc = nn.Linear(32, 4)

    def forward(self, x):
        y, _ = self.lstm(x)
        return nn.functional.softmax(self.fc(y[:, -1]), -1)


class BiGruTagger(nn.Layer):
    def __init__(self) -> None:
        super().__init__()
        self.gru = nn.GRU(12, 16, direction="bidirect")
        self.fc = nn.Linear(32, 5)

    def forward(self, x):
        y, _ = self.gru(x)
        return self.fc(y)


class ConvNet(nn.Layer):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2D(3, 16, 3, padding=1)
        self.bn = nn.BatchNorm2D(16)
        self.conv2 = nn.Conv2D(16, 24, 3, stride=2, padding=1)
        self.pool = nn.AdaptiveAvgPool2D(1)
        self.fc = nn.Linear(24, 6)

    def forward(self, x):
        h = nn.functional.hardswish(self.bn(self.conv(x)))
        h = self.pool(nn.functional.relu(self.conv2(h)))
        return nn.functional.softmax(self.fc(paddle.flatten(h, 1)), -1)


RECIPES = {
    "lstm": (LstmClassifier, [InputSpec([None, None, 16], "float32", "x")]),
    "bigru": (BiGruTagger, [InputSpec([None, None, 12], "float32", "x")]),
    "convnet": (ConvNet, [InputSpec([None, 3, None, None], "float32", "x")]),
}


def main() -> None:
    name, opset, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    paddle.seed(0)
    cls, spec = RECIPES[name]
    layer = cls()
    for sub in layer.sublayers():
        # Non-trivial batch-norm statistics, as a trained network has.
        if isinstance(sub, nn.BatchNorm2D):
            sub._mean.set_value(paddle.uniform(sub._mean.shape, min=-0.5, max=0.5))
            sub._variance.set_value(paddle.uniform(sub._variance.shape, min=0.5, max=2.0))
    layer.eval()
    with tempfile.TemporaryDirectory() as tmp:
        prefix = str(Path(tmp) / "inference")
        paddle.jit.save(paddle.jit.to_static(layer, input_spec=spec, full_graph=True), prefix)
        files = sorted(p.name for p in Path(tmp).iterdir())
        model_file = next(f for f in files if f.endswith((".json", ".pdmodel")))
        subprocess.run(
            [str(Path(sys.executable).parent / "paddle2onnx"), "--model_dir", tmp, "--model_filename", model_file,
             "--params_filename", "inference.pdiparams", "--save_file", out, "--opset_version", str(opset)],
            check=True, capture_output=True,
        )


if __name__ == "__main__":
    main()
