"""Seeded, realistic inputs: speech-like audio, text-like images, file bytes.

Each maker takes a numpy Generator and the batch size and returns one array.
Realistic matters: a model fed zeros or uniform noise can hide a wrong answer
(a saturated sigmoid gives 0 or 1 whatever the backend computes).
"""

from __future__ import annotations

import numpy as np

SR = 16000


def speech(rng: np.random.Generator, batch: int, samples: int, scale: float = 1.0) -> np.ndarray:
    """Voiced bursts (harmonics of a gliding f0) between quiet noise, in [-1, 1] times scale."""
    t = np.arange(samples) / SR
    rows = []
    for _ in range(batch):
        f0 = rng.uniform(100, 220) * (1 + 0.1 * np.sin(2 * np.pi * rng.uniform(2, 5) * t))
        phase = 2 * np.pi * np.cumsum(f0) / SR
        voiced = sum(np.sin(k * phase) / k for k in range(1, 8))
        envelope = np.clip(np.sin(2 * np.pi * rng.uniform(3, 6) * t + rng.uniform(0, 6.3)), 0, None)
        x = 0.3 * envelope * voiced + 0.01 * rng.standard_normal(samples)
        rows.append(np.clip(x, -1, 1))
    return (np.stack(rows) * scale).astype(np.float32)


def smooth_normal(rng: np.random.Generator, shape: tuple[int, ...], scale: float = 1.0, mean: float = 0.0) -> np.ndarray:
    """Normal noise smoothed along the last axis, like features out of an earlier model."""
    x = rng.standard_normal(shape)
    if shape[-1] >= 5:
        k = np.ones(5) / 5
        x = np.apply_along_axis(lambda r: np.convolve(r, k, mode="same"), -1, x)
    return (mean + scale * x / (x.std() + 1e-9)).astype(np.float32)


def document(rng: np.random.Generator, batch: int, height: int, width: int) -> np.ndarray:
    """RGB uint8-range images: light paper, dark text-like strokes in lines, a coloured box."""
    out = np.empty((batch, 3, height, width), np.float32)
    for b in range(batch):
        img = np.full((3, height, width), 235.0) + rng.normal(0, 4, (3, height, width))
        line_h = max(4, height // 6)
        for top in range(line_h // 2, height - line_h, line_h * 2):
            x = int(rng.integers(1, max(2, width // 8)))
            while x < width - 4:
                w = int(rng.integers(2, max(3, line_h)))
                img[:, top : top + line_h, x : x + w] = rng.uniform(10, 60)
                x += w + int(rng.integers(1, max(2, line_h // 2)))
        y0, x0 = int(rng.integers(0, height // 2)), int(rng.integers(0, width // 2))
        img[:, y0 : y0 + height // 4, x0 : x0 + width // 4] = rng.uniform(60, 200, (3, 1, 1))
        out[b] = np.clip(img, 0, 255)
    return out


def normalize(img: np.ndarray, mean: tuple[float, ...], std: tuple[float, ...], scale: float = 1 / 255) -> np.ndarray:
    m = np.asarray(mean, np.float32).reshape(1, -1, 1, 1)
    s = np.asarray(std, np.float32).reshape(1, -1, 1, 1)
    return ((img * scale - m) / s).astype(np.float32)


def imagenet(rng: np.random.Generator, batch: int, size: int = 224) -> np.ndarray:
    return normalize(document(rng, batch, size, size), (0.485, 0.456, 0.406), (0.229, 0.224, 0.225))


def paddle_ocr(rng: np.random.Generator, batch: int, height: int, width: int) -> np.ndarray:
    return normalize(document(rng, batch, height, width), (0.5, 0.5, 0.5), (0.5, 0.5, 0.5))


def gray_text(rng: np.random.Generator, batch: int, height: int, width: int) -> np.ndarray:
    """One-channel captcha-like text images normalized to [-1, 1]."""
    img = document(rng, batch, height, width)[:, :1]
    return ((img / 255 - 0.5) / 0.5).astype(np.float32)


FILES = [
    b"#!/usr/bin/env python3\nimport sys\n\ndef main(argv):\n    for arg in argv[1:]:\n        print(arg.upper())\n\nif __name__ == '__main__':\n    main(sys.argv)\n",
    b"<!DOCTYPE html>\n<html><head><title>Report</title></head>\n<body><h1>Quarterly figures</h1><table><tr><td>42</td></tr></table></body></html>\n",
    b'{"name": "lrai", "version": "0.1.0", "models": [{"id": 1, "ok": true}, {"id": 2, "ok": false}]}\n',
    b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x01\x00\x00\x00\x01\x00\x08\x06\x00\x00\x00\x5c\x72\xa8\x66",
]


def file_bytes(rng: np.random.Generator, batch: int, beg: int, end: int, pad: int, dtype: type) -> np.ndarray:
    """Magika's features: the first `beg` and last `end` bytes of a file, padded with `pad`."""
    rows = []
    for b in range(batch):
        content = FILES[b % len(FILES)] * int(rng.integers(1, 4))
        if content.startswith(b"\x89PNG"):
            content += rng.integers(0, 256, 600, dtype=np.uint8).tobytes()
        head = list(content[:beg]) + [pad] * max(0, beg - len(content))
        tail = [pad] * max(0, end - len(content)) + list(content[-end:])
        rows.append(head + tail)
    return np.asarray(rows, dtype)
