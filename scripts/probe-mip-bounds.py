#!/usr/bin/env python3
"""Probe: how tight can an off-the-shelf MIP solver make an MNIST fc network's
intermediate bounds? (docs/verify.md, "A MIP solver for the refinement?")

For each hidden layer k = 2..LAYERS of an MNIST fc network (Gemm/ReLU chain, 784
inputs) over a VNN-LIB property's input box, bounds every neuron of layer k twice:
by the LP with the triangle ReLU relaxation (what α-CROWN converges to), then, for
the neurons the LP leaves unstable, by a big-M MIP with HiGHS (one thread, a time
limit per bound; the solver's dual bound counts when the limit is hit). Layer 1 is
exact from interval arithmetic; each layer's MIP bounds feed the next layer's models.
Prints the unstable ReLUs per layer and the time, to compare with the `refine`
lines that `RUST_LOG=info target/release/examples/verify_instance` prints.

    python3 -m venv /tmp/mip && /tmp/mip/bin/pip install highspy numpy onnx
    /tmp/mip/bin/python scripts/probe-mip-bounds.py NET.onnx PROP.vnnlib SECONDS_PER_BOUND LAYERS
"""
import re
import sys
import time

import highspy
import numpy as np
import onnx
from onnx import numpy_helper

net, prop, limit, layers = sys.argv[1], sys.argv[2], float(sys.argv[3]), int(sys.argv[4])
model = onnx.load(net)
init = {t.name: numpy_helper.to_array(t).astype(np.float64) for t in model.graph.initializer}
Ws = [init[n.input[1]] for n in model.graph.node if n.op_type == "Gemm"]
bs = [init[n.input[2]] for n in model.graph.node if n.op_type == "Gemm"]
text = open(prop).read()
n_in = Ws[0].shape[1]
lo, hi = np.zeros(n_in), np.zeros(n_in)
for i, v in re.findall(r"\(<= X_(\d+) ([-\d.e]+)\)", text):
    hi[int(i)] = float(v)
for i, v in re.findall(r"\(>= X_(\d+) ([-\d.e]+)\)", text):
    lo[int(i)] = float(v)
INF = highspy.kHighsInf
W, b = Ws[0], bs[0]
L = [W.clip(0) @ lo + W.clip(max=0) @ hi + b]
U = [W.clip(0) @ hi + W.clip(max=0) @ lo + b]
print(f"layer 1 exact: unstable {int(((L[0] < 0) & (U[0] > 0)).sum())}", flush=True)


def build(k, relax):
    """Layers 1..k-1 as constraints; returns the model, the a_{k-1} columns, #columns."""
    h = highspy.Highs()
    h.setOptionValue("output_flag", False)
    h.setOptionValue("threads", 1)
    h.addVars(n_in, lo, hi)
    prev, nv = np.arange(n_in), n_in
    for j in range(k - 1):
        W, b, l, u = Ws[j], bs[j], L[j], U[j]
        n = W.shape[0]
        z = np.arange(nv, nv + n)
        h.addVars(n, l, u)
        nv += n
        for r in range(n):  # z_r = W_r a + b_r
            idx = np.concatenate([prev, [z[r]]]).astype(np.int32)
            h.addRow(-b[r], -b[r], len(idx), idx, np.concatenate([W[r], [-1.0]]))
        a = np.arange(nv, nv + n)
        h.addVars(n, np.zeros(n), np.maximum(u, 0))
        nv += n
        for r in range(n):
            az = np.array([a[r], z[r]], np.int32)
            if l[r] >= 0:
                h.addRow(0, 0, 2, az, np.array([1.0, -1.0]))  # a = z
            elif u[r] > 0:
                h.addRow(0, INF, 2, az, np.array([1.0, -1.0]))  # a >= z
                if relax:  # a <= u (z - l) / (u - l)
                    s = u[r] / (u[r] - l[r])
                    h.addRow(-INF, -s * l[r], 2, az, np.array([1.0, -s]))
                else:  # a <= z - l (1 - d), a <= u d, d binary
                    d = nv
                    h.addVar(0, 1)
                    nv += 1
                    h.changeColIntegrality(d, highspy.HighsVarType.kInteger)
                    h.addRow(-INF, -l[r], 3, np.array([a[r], z[r], d], np.int32),
                             np.array([1.0, -1.0, -l[r]]))
                    h.addRow(-INF, 0, 2, np.array([a[r], d], np.int32), np.array([1.0, -u[r]]))
            # else: stably inactive, a in [0, 0]
        prev = a
    return h, prev, nv


for k in range(2, layers + 1):
    W, b = Ws[k - 1], bs[k - 1]
    n = W.shape[0]
    found = {}
    for name in ("lp", "mip"):
        h, prev, nv = build(k, name == "lp")
        if name == "mip":
            h.setOptionValue("time_limit", limit)
            lk, uk = found["lp"][0].copy(), found["lp"][1].copy()
            rows = [r for r in range(n) if lk[r] < 0 < uk[r]]
        else:
            lk, uk = np.empty(n), np.empty(n)
            rows = range(n)
        t0 = time.time()
        for r in rows:
            for sense in (1, -1):
                cost = np.zeros(nv)
                cost[prev] = sense * W[r]
                h.changeColsCost(nv, np.arange(nv, dtype=np.int32), cost)
                h.run()
                info = h.getInfo()
                v = info.objective_function_value if name == "lp" else info.mip_dual_bound
                v = sense * v + b[r]
                if sense == 1:
                    lk[r] = v if name == "lp" else max(lk[r], v)
                    if name == "mip" and lk[r] >= 0:
                        break  # stably active: the upper bound changes nothing
                else:
                    uk[r] = v if name == "lp" else min(uk[r], v)
        found[name] = (lk, uk)
        print(f"layer {k} {name}: unstable {int(((lk < 0) & (uk > 0)).sum())} "
              f"in {time.time() - t0:.1f} s", flush=True)
    L.append(found["mip"][0])
    U.append(found["mip"][1])
