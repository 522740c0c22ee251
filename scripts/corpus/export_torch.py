"""Small networks exported by torch.onnx (TorchScript exporter) at opsets 11-20.

Run in the torch venv: `python export_torch.py RECIPE OPSET OUT.onnx`. Weights
come from a fixed seed, so the same torch version writes the same model.
"""

from __future__ import annotations

import sys

import torch
from torch import nn


class GruClassifier(nn.Module):
    """A GRU over features; `squeeze()` without a dim is what PyTorch 1.x code wrote (Squeeze without axes)."""

    def __init__(self) -> None:
        super().__init__()
        self.gru = nn.GRU(20, 32, num_layers=2, batch_first=True)
        self.fc = nn.Linear(32, 5)

    def forward(self, x):
        _, h = self.gru(x)
        return torch.softmax(self.fc(h[-1]), -1).squeeze()


class LstmStream(nn.Module):
    """Streaming bidirectional LSTM: the state goes in and out as ordinary tensors."""

    def __init__(self) -> None:
        super().__init__()
        self.lstm = nn.LSTM(16, 24, num_layers=2, bidirectional=True)
        self.head = nn.Linear(48, 1)

    def forward(self, x, h0, c0):
        y, (h, c) = self.lstm(x, (h0, c0))
        return torch.sigmoid(self.head(y)), h, c


class RnnTagger(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.rnn = nn.RNN(12, 16, nonlinearity="relu", batch_first=True)
        self.out = nn.Linear(16, 3)

    def forward(self, x):
        y, _ = self.rnn(x)
        return self.out(y)


@torch.jit.script
def _iterate(x: torch.Tensor, steps: torch.Tensor) -> torch.Tensor:
    acc = x
    for i in range(int(steps)):
        acc = torch.tanh(acc * 0.9 + float(i) * 0.01)
    return acc


class LoopNet(nn.Module):
    """A data-dependent trip count: exported as Loop."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(8, 8)

    def forward(self, x, steps):
        return _iterate(self.fc(x), steps)


@torch.jit.script
def _branch(x: torch.Tensor) -> torch.Tensor:
    if bool(x.sum() > 0):
        return torch.relu(x) * 2.0
    return torch.sigmoid(x) - 1.0


class IfNet(nn.Module):
    """A data-dependent branch: exported as If."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(10, 6)

    def forward(self, x):
        return _branch(self.fc(x))


class TinyEncoder(nn.Module):
    """Token ids (int64) and a bool padding mask to a pooled embedding, attention by hand."""

    def __init__(self) -> None:
        super().__init__()
        self.emb = nn.Embedding(1000, 32)
        self.pos = nn.Embedding(64, 32)
        self.qkv = nn.Linear(32, 96)
        self.norm = nn.LayerNorm(32)
        self.ff = nn.Sequential(nn.Linear(32, 64), nn.GELU(), nn.Linear(64, 32))

    def forward(self, input_ids, mask):
        positions = torch.arange(input_ids.shape[1]).unsqueeze(0)
        h = self.emb(input_ids) + self.pos(positions)
        q, k, v = self.qkv(h).chunk(3, dim=-1)
        scores = q @ k.transpose(1, 2) / 32**0.5
        scores = scores.masked_fill(~mask.unsqueeze(1), -1e4)
        h = self.norm(h + torch.softmax(scores, -1) @ v)
        h = self.norm(h + self.ff(h))
        m = mask.unsqueeze(-1).to(h.dtype)
        return (h * m).sum(1) / m.sum(1).clamp(min=1.0)


class HashedIds(nn.Module):
    """int64 feature hashes beyond 2**32: Mod into a vocabulary, and the ids doubled back out."""

    def __init__(self) -> None:
        super().__init__()
        self.emb = nn.Embedding(997, 8)

    def forward(self, ids):
        return self.emb(ids % 997).sum(1), ids * 2, torch.argmax(ids, dim=1)


class SmallCnn(nn.Module):
    def __init__(self, classes: int = 10) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(3, 16, 3, padding=1),
            nn.BatchNorm2d(16),
            nn.GELU(),
            nn.MaxPool2d(2),
            nn.Conv2d(16, 32, 3, padding=1, groups=2),
            nn.BatchNorm2d(32),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(1),
        )
        self.fc = nn.Linear(32, classes)

    def forward(self, x):
        return torch.softmax(self.fc(torch.flatten(self.body(x), 1)), -1)


class UpsampleSeg(nn.Module):
    """A tiny segmentation head: conv, upsample by 2 (Resize), free spatial dims."""

    def __init__(self) -> None:
        super().__init__()
        self.down = nn.Conv2d(3, 8, 3, stride=2, padding=1)
        self.up = nn.ConvTranspose2d(8, 8, 2, stride=2)
        self.out = nn.Conv2d(16, 4, 1)

    def forward(self, x):
        d = torch.relu(self.down(x))
        u = torch.nn.functional.interpolate(d, scale_factor=2.0, mode="bilinear", align_corners=False)
        return torch.argmax(self.out(torch.cat([u, self.up(d)], 1)), 1)


def _randomize_bn(model: nn.Module) -> None:
    """Non-trivial running statistics, as a trained model has."""
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)


def recipe(name: str):
    """(model, example inputs, input names, output names, dynamic axes)."""
    if name == "gru":
        return GruClassifier(), (torch.randn(2, 7, 20),), ["x"], ["probs"], {"x": {0: "batch", 1: "time"}, "probs": {0: "batch"}}
    if name == "lstm_stream":
        ex = (torch.randn(5, 2, 16), torch.zeros(4, 2, 24), torch.zeros(4, 2, 24))
        dyn = {"x": {0: "time", 1: "batch"}, "h0": {1: "batch"}, "c0": {1: "batch"}, "y": {0: "time", 1: "batch"}, "hn": {1: "batch"}, "cn": {1: "batch"}}
        return LstmStream(), ex, ["x", "h0", "c0"], ["y", "hn", "cn"], dyn
    if name == "rnn":
        return RnnTagger(), (torch.randn(2, 9, 12),), ["x"], ["tags"], {"x": {0: "batch", 1: "time"}, "tags": {0: "batch", 1: "time"}}
    if name == "loop":
        return LoopNet(), (torch.randn(2, 8), torch.tensor(3)), ["x", "steps"], ["y"], {"x": {0: "batch"}, "y": {0: "batch"}}
    if name == "if":
        return IfNet(), (torch.randn(2, 10),), ["x"], ["y"], {"x": {0: "batch"}, "y": {0: "batch"}}
    if name == "encoder":
        ex = (torch.randint(0, 1000, (2, 12)), torch.ones(2, 12, dtype=torch.bool))
        dyn = {"input_ids": {0: "batch", 1: "seq"}, "mask": {0: "batch", 1: "seq"}, "embedding": {0: "batch"}}
        return TinyEncoder(), ex, ["input_ids", "mask"], ["embedding"], dyn
    if name == "hashed_ids":
        dyn = {"ids": {0: "batch"}, "pooled": {0: "batch"}, "doubled": {0: "batch"}, "argmax": {0: "batch"}}
        return HashedIds(), (torch.randint(0, 2**40, (2, 6)),), ["ids"], ["pooled", "doubled", "argmax"], dyn
    if name == "cnn":
        return SmallCnn(), (torch.randn(2, 3, 32, 32),), ["image"], ["probs"], {"image": {0: "batch"}, "probs": {0: "batch"}}
    if name == "cnn_free_hw":
        dyn = {"image": {0: "batch", 2: "height", 3: "width"}, "probs": {0: "batch"}}
        return SmallCnn(), (torch.randn(2, 3, 32, 32),), ["image"], ["probs"], dyn
    if name == "seg":
        dyn = {"image": {0: "batch", 2: "height", 3: "width"}, "mask": {0: "batch", 1: "height", 2: "width"}}
        return UpsampleSeg(), (torch.randn(1, 3, 32, 32),), ["image"], ["mask"], dyn
    raise SystemExit(f"unknown recipe '{name}'")


def main() -> None:
    name, opset, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    torch.manual_seed(0)
    model, example, in_names, out_names, dyn = recipe(name)
    _randomize_bn(model)
    model.eval()
    torch.onnx.export(
        model, example, out, input_names=in_names, output_names=out_names,
        dynamic_axes=dyn, opset_version=opset, dynamo=False,
    )


if __name__ == "__main__":
    main()
