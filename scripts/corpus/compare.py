"""Compare the outputs `lrai run --output-dir` wrote with the reference arrays."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np


def _as_text(a: np.ndarray) -> np.ndarray:
    """LRAI writes BYTES as `S`; the references hold `U`. Compare them as text."""
    if a.dtype.kind == "S":
        return np.char.decode(a, "utf-8", errors="replace")
    return a


def one(name: str, got: np.ndarray, want: np.ndarray, tol: tuple[float, float]) -> str | None:
    """None when `got` matches `want`, else why not."""
    got, want = _as_text(got), _as_text(want)
    if got.shape != want.shape:
        return f"output '{name}': shape {list(got.shape)}, expected {list(want.shape)}"
    if want.dtype.kind == "U" or got.dtype.kind == "U":
        if got.dtype.kind != want.dtype.kind:
            return f"output '{name}': dtype {got.dtype}, expected {want.dtype}"
        bad = np.flatnonzero(got.ravel() != want.ravel())
        return None if bad.size == 0 else f"output '{name}': {bad.size} strings differ, first at {bad[0]}: {got.ravel()[bad[0]]!r} vs {want.ravel()[bad[0]]!r}"
    if got.dtype != want.dtype:
        return f"output '{name}': dtype {got.dtype}, expected {want.dtype}"
    if want.dtype.kind in "biu":
        bad = np.flatnonzero(got.ravel() != want.ravel())
        return None if bad.size == 0 else f"output '{name}': {bad.size}/{want.size} values differ, first at {bad[0]}: {got.ravel()[bad[0]]} vs {want.ravel()[bad[0]]}"
    atol, rtol = tol
    g, w = got.astype(np.float64).ravel(), want.astype(np.float64).ravel()
    nan_ok = np.isnan(g) & np.isnan(w)
    err = np.where(nan_ok, 0.0, np.abs(g - w))
    bad = ~(err <= atol + rtol * np.abs(w))
    if not bad.any():
        return None
    k = int(np.argmax(np.where(bad, err, -1)))
    return f"output '{name}': {int(bad.sum())}/{w.size} values off (atol {atol:g}, rtol {rtol:g}), worst at {k}: {g[k]:.6g} vs {w[k]:.6g}"


def outputs(out_dir: Path, expected: dict[str, np.ndarray], tol: tuple[float, float]) -> str | None:
    """None when every expected output is there and matches; extra outputs are an error too."""
    doc = json.loads((out_dir / "outputs.json").read_text())
    files = {o["name"]: out_dir / o["file"] for o in doc["outputs"]}
    problems = []
    for name, want in expected.items():
        if name not in files:
            problems.append(f"output '{name}' missing")
            continue
        why = one(name, np.load(files[name]), want, tol)
        if why:
            problems.append(why)
    extra = sorted(set(files) - set(expected))
    if extra:
        problems.append(f"unexpected outputs {extra}")
    return "; ".join(problems) or None
