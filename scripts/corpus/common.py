"""Paths, logging and small helpers shared by the corpus scripts.

The cache holds everything that is not ours to commit: downloaded packages, the
models extracted or exported from them, the virtual environments the exporters
need, and the ONNX Runtime references. It is `$LRAI_CORPUS_CACHE`, or
`~/.cache/lrai-corpus`.
"""

from __future__ import annotations

import hashlib
import os
import sys
import zlib
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent


def cache_dir() -> Path:
    env = os.environ.get("LRAI_CORPUS_CACHE")
    root = Path(env) if env else Path.home() / ".cache" / "lrai-corpus"
    root.mkdir(parents=True, exist_ok=True)
    return root


def model_dir(model_id: str) -> Path:
    return cache_dir() / "models" / model_id


def model_path(model_id: str) -> Path:
    # Named after the model: lrai names a model after its file stem in every message.
    return model_dir(model_id) / f"{model_id}.onnx"


def refs_dir(model_id: str) -> Path:
    return cache_dir() / "refs" / model_id


def log(*parts: object) -> None:
    """Progress goes to stderr; results go to stdout or files."""
    print(*parts, file=sys.stderr, flush=True)


def seed_of(model_id: str, batch: int) -> int:
    """A fixed seed per model and batch size, so inputs never change between runs."""
    return zlib.crc32(f"{model_id}/{batch}".encode())


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def venv_python(name: str) -> Path:
    return cache_dir() / "venvs" / name / "bin" / "python"
