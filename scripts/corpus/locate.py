"""Find the first node where a backend goes wrong on a corpus model.

    python scripts/corpus/locate.py ID --backend tract [--batch 1] [--repeat 1] [--inline-if then] [--keep DIR]

Cuts the graph after node k (in the file's topological order), keeps only what the
cut outputs need, and runs it on `lrai run` and on ONNX Runtime with the model's
reference inputs; a binary search finds a k whose prefix fails (does not load, fails to
run, panics, or differs from ONNX Runtime), then it walks up to failing producers until
every producer of the node matches. Prints that node, and with
`--keep` saves the failing prefix as a reproducer.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort

import check
import common
import compare
import manifest


def _used_names(node: onnx.NodeProto) -> set[str]:
    """Inputs of a node, with the outer-scope names its subgraphs read."""
    names = {i for i in node.input if i}
    for attr in node.attribute:
        graphs = [attr.g] if attr.type == onnx.AttributeProto.GRAPH else list(attr.graphs)
        for g in graphs:
            inner = {o for n in g.node for o in n.output} | {i.name for i in g.input} | {i.name for i in g.initializer}
            for n in g.node:
                names |= _used_names(n) - inner
    return names


def prefix(model: onnx.ModelProto, k: int) -> onnx.ModelProto:
    """The model cut after node k, outputs = node k's outputs, pruned to what they need."""
    g = model.graph
    wanted = {o for o in g.node[k].output if o}
    need = set(wanted)
    keep = []
    for node in reversed(g.node[: k + 1]):
        if need & set(node.output):
            keep.append(node)
            need |= _used_names(node)
    out = onnx.ModelProto()
    out.CopyFrom(model)
    del out.graph.node[:]
    out.graph.node.extend(reversed(keep))
    inits = [i for i in g.initializer if i.name in need]
    del out.graph.initializer[:]
    out.graph.initializer.extend(inits)
    inputs = [i for i in g.input if i.name in need and i.name not in {x.name for x in inits}]
    del out.graph.input[:]
    out.graph.input.extend(inputs)
    del out.graph.output[:]
    out.graph.output.extend(onnx.ValueInfoProto(name=n) for n in g.node[k].output if n)
    return out


def inline_ifs(model: onnx.ModelProto, branch: str) -> None:
    """Replace each top-level If by the nodes of one branch, to look inside a graph that is one big If."""
    g = model.graph
    nodes = []
    for node in g.node:
        if node.op_type != "If":
            nodes.append(node)
            continue
        body = next(a.g for a in node.attribute if a.name == f"{branch}_branch")
        nodes.extend(body.node)
        g.initializer.extend(body.initializer)
        for inner, outer in zip(body.output, node.output):
            nodes.append(onnx.helper.make_node("Identity", [inner.name], [outer], name=f"{outer}_from_{branch}"))
    del g.node[:]
    g.node.extend(nodes)


def typed_outputs(path: Path) -> None:
    """LRAI wants typed graph outputs; ONNX Runtime infers them, so copy its answer in."""
    model = onnx.load(str(path))
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    types = {o.name: o for o in sess.get_outputs()}
    for vi in model.graph.output:
        arg = types[vi.name]
        elem = onnx.helper.np_dtype_to_tensor_dtype(np.dtype(_np_type(arg.type)))
        dims = [d if isinstance(d, int) else (d or None) for d in (arg.shape or [])]
        vi.CopyFrom(onnx.helper.make_tensor_value_info(vi.name, elem, dims if arg.shape is not None else None))
    onnx.save(model, str(path))


def _np_type(ort_type: str) -> str:
    name = ort_type[len("tensor(") : -1]
    return {"float": "float32", "double": "float64", "string": "object", "float16": "float16"}.get(name, name)


class Probe:
    def __init__(self, m: manifest.Model, args: argparse.Namespace, work: Path) -> None:
        self.m, self.args, self.work = m, args, work
        self.model = onnx.load(str(common.model_path(m.id)))
        if args.inline_if:
            inline_ifs(self.model, args.inline_if)
        self.feeds = dict(np.load(common.refs_dir(m.id) / f"b{args.batch}.inputs.npz"))
        self.env = check.lrai_env()
        self.cache: dict[int, str | None] = {}

    def failure(self, k: int) -> str | None:
        """Why the prefix ending at node k fails on the backend, or None when it matches."""
        if k in self.cache:
            return self.cache[k]
        path = self.work / f"prefix_{k}.onnx"
        onnx.save(prefix(self.model, k), str(path))
        typed_outputs(path)
        names = [i.name for i in onnx.load(str(path)).graph.input]
        feeds = {n: self.feeds[n] for n in names}
        inputs = self.work / f"prefix_{k}.npz"
        np.savez(inputs, **feeds)
        sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        want = {o.name: v for o, v in zip(sess.get_outputs(), sess.run(None, feeds))}
        want = {n: (v.astype(np.str_) if v.dtype == object else v) for n, v in want.items()}
        out = self.work / f"out_{k}"
        shutil.rmtree(out, ignore_errors=True)
        cmd = [self.args.lrai, "run", str(path), "-i", str(inputs), "--backend", self.args.backend,
               "--output-dir", str(out), "--repeat", str(self.args.repeat)]
        proc = subprocess.run(cmd, capture_output=True, text=True, env=self.env, timeout=600)
        if check.crashed(proc):
            why = f"panic: {check.panic_reason(proc.stderr)}"
        elif proc.returncode != 0:
            why = f"error: {check.first_error(proc.stderr)}"
        else:
            why = compare.outputs(out, want, manifest.TOLERANCES[self.m.tol])
        self.cache[k] = why
        node = self.model.graph.node[k]
        common.log(f"  node {k} {node.op_type} '{node.name}': {why or 'match'}")
        return why


def walk_up(probe: Probe, k: int) -> int:
    """From a failing node, move to a failing producer until every producer matches.

    The binary search alone can stop late: a failure need not reach every later node
    (a shape branch beside it still matches)."""
    nodes = probe.model.graph.node
    producer = {o: i for i, n in enumerate(nodes) for o in n.output if o}
    while True:
        parents = sorted({producer[name] for name in _used_names(nodes[k]) if name in producer})
        failing = [p for p in parents if probe.failure(p) is not None]
        if not failing:
            return k
        k = failing[0]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("id")
    ap.add_argument("--backend", default="tract", choices=check.BACKENDS)
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--lrai", default=str(common.REPO / "target" / "release" / "lrai"))
    ap.add_argument("--inline-if", choices=["then", "else"], help="first replace top-level If nodes by this branch")
    ap.add_argument("--keep", type=Path, help="save the smallest failing prefix and its inputs here")
    args = ap.parse_args()
    m = manifest.by_id(args.id)
    with tempfile.TemporaryDirectory(prefix="lrai-bisect-") as tmp:
        probe = Probe(m, args, Path(tmp))
        last = len(probe.model.graph.node) - 1
        if probe.failure(last) is None:
            raise SystemExit(f"'{m.id}': the prefix ending at the last node matches; nothing to bisect")
        lo, hi = 0, last  # invariant: failure(hi) is not None
        while lo < hi:
            mid = (lo + hi) // 2
            if probe.failure(mid) is None:
                lo = mid + 1
            else:
                hi = mid
        hi = walk_up(probe, hi)
        node = probe.model.graph.node[hi]
        print(f"{m.id} on {args.backend}: first failing prefix ends at node {hi} of {last + 1}: "
              f"{node.op_type} '{node.name}' inputs {list(node.input)} -> {list(node.output)}")
        print(f"  {probe.failure(hi)}")
        if args.keep:
            args.keep.mkdir(parents=True, exist_ok=True)
            shutil.copy(Path(tmp) / f"prefix_{hi}.onnx", args.keep / f"{m.id}.prefix.onnx")
            shutil.copy(Path(tmp) / f"prefix_{hi}.npz", args.keep / f"{m.id}.prefix.npz")
            print(f"  saved {args.keep / (m.id + '.prefix.onnx')} and its inputs")


if __name__ == "__main__":
    main()
