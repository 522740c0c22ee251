"""ONNX Runtime reference outputs for the corpus, at batch 1 and (where the model batches) 4.

    python scripts/corpus/refs.py [--small] [--only ID ...] [--force]

Writes `<cache>/refs/<id>/b<N>.inputs.npz` (named after the model's inputs, ready
for `lrai run -i`), `b<N>.outputs.npz` and `meta.json` (opset, ops, outputs). The
reference run is made twice and must agree with itself, and with ONNX Runtime's
unoptimized graph (within the model's tolerance). Needs onnxruntime==1.31.1.
"""

from __future__ import annotations

import argparse
import json
from collections import Counter

import numpy as np
import onnx
import onnxruntime as ort

import common
import compare
import manifest
from manifest import Model

ORT_VERSION = "1.31.1"


def graph_ops(model: onnx.ModelProto) -> list[str]:
    """Operator types, subgraphs (If/Loop/Scan bodies) included, most frequent first."""
    ops: Counter[str] = Counter()

    def walk(graph: onnx.GraphProto) -> None:
        for node in graph.node:
            ops[f"{node.domain}.{node.op_type}" if node.domain not in ("", "ai.onnx") else node.op_type] += 1
            for attr in node.attribute:
                if attr.type == onnx.AttributeProto.GRAPH:
                    walk(attr.g)
                for g in attr.graphs:
                    walk(g)

    walk(model.graph)
    return [op for op, _ in ops.most_common()]


def default_opset(model: onnx.ModelProto) -> int | None:
    versions = [o.version for o in model.opset_import if o.domain in ("", "ai.onnx")]
    return max(versions) if versions else None


def storable(a: np.ndarray) -> np.ndarray:
    """ORT returns strings as object arrays; npz without pickle needs a fixed-width dtype."""
    return a.astype(np.str_) if a.dtype == object else a


def run_ort(path: str, feeds: dict[str, np.ndarray], optimize: bool = True) -> dict[str, np.ndarray]:
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    if not optimize:
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    sess = ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])
    names = [o.name for o in sess.get_outputs()]
    return {n: storable(v) for n, v in zip(names, sess.run(names, feeds))}


def same(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> bool:
    return a.keys() == b.keys() and all(np.array_equal(a[k], b[k], equal_nan=a[k].dtype.kind == "f") for k in a)


def check_unoptimized(m: Model, path: str, feeds: dict[str, np.ndarray], optimized: dict[str, np.ndarray]) -> None:
    """The reference must not depend on the CPU: ONNX Runtime's fused kernels (u8s8 without
    VNNI) can saturate where the plain graph doesn't, so both must agree within tolerance."""
    plain = run_ort(path, feeds, optimize=False)
    tol = manifest.TOLERANCES[m.tol]
    problems = [why for name, want in plain.items() if (why := compare.one(name, optimized[name], want, tol))]
    if problems:
        raise SystemExit(f"'{m.id}': ONNX Runtime with and without graph optimizations disagree, "
                         f"so the reference depends on the CPU: {'; '.join(problems)}")


def make_refs(m: Model, force: bool) -> dict:
    path = common.model_path(m.id)
    out = common.refs_dir(m.id)
    meta_path = out / "meta.json"
    sha = common.sha256(path)
    if not force and meta_path.exists():
        meta = json.loads(meta_path.read_text())
        if meta.get("sha256") == sha and meta.get("ort") == ORT_VERSION:
            return meta
    common.log(f"refs {m.id}")
    out.mkdir(parents=True, exist_ok=True)
    model = onnx.load(str(path), load_external_data=False)
    meta = {
        "id": m.id, "sha256": sha, "ort": ORT_VERSION, "opset": default_opset(model),
        "producer": f"{model.producer_name} {model.producer_version}".strip(),
        "ops": graph_ops(model), "batches": [1, 4] if m.batches else [1], "outputs": {},
    }
    for batch in meta["batches"]:
        feeds = m.inputs(np.random.default_rng(common.seed_of(m.id, batch)), batch)
        first = run_ort(str(path), feeds)
        if not same(first, run_ort(str(path), feeds)):
            raise SystemExit(f"'{m.id}': ONNX Runtime gives different outputs on two runs of the same inputs")
        check_unoptimized(m, str(path), feeds, first)
        np.savez(out / f"b{batch}.inputs.npz", **{k: storable(np.asarray(v)) for k, v in feeds.items()})
        np.savez(out / f"b{batch}.outputs.npz", **first)
        meta["outputs"][str(batch)] = {k: {"dtype": str(v.dtype), "shape": list(v.shape)} for k, v in first.items()}
    meta_path.write_text(json.dumps(meta, indent=1) + "\n")
    return meta


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--small", action="store_true", help="only the models CI runs")
    ap.add_argument("--only", nargs="+", metavar="ID", help="only these models")
    ap.add_argument("--force", action="store_true", help="remake references that are up to date")
    args = ap.parse_args()
    if ort.__version__ != ORT_VERSION:
        raise SystemExit(f"onnxruntime {ORT_VERSION} is the reference, got {ort.__version__}")
    for m in manifest.select(args.small, args.only):
        make_refs(m, args.force)


if __name__ == "__main__":
    main()
