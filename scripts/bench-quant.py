#!/usr/bin/env python3
"""LRAI's quantizer side by side with onnxruntime.quantization (issue 6).

Per model: size ratio, accuracy (digits) or agreement/cosine (MiniLM, mobilenet_v2), and
throughput of the float, LRAI-quantized and ORT-tool-quantized models on both LRAI
backends (`lrai run --json --repeat`) at batch 1 and 8.

Run from the repository root after `cargo build --release`:
    .venv/bin/python scripts/bench-quant.py [--models digits_mlp,digits_cnn,minilm_l6,mobilenet_v2]
        [--out target/bench-quant] [--runs 20] [--backends onnxruntime,tract] [--interleaved-rounds 40]
Needs ../shared/models (or --models-dir) and the venv (onnxruntime==1.31.1, onnx, numpy).
"""
import argparse
import json
import os
import subprocess
import sys
import time
import unicodedata

import numpy as np

SENTENCES = """A man is eating food.|A man is eating a piece of bread.|The girl is carrying a baby.|A man is riding a horse.
A woman is playing violin.|Two men pushed carts through the woods.|A man is riding a white horse on an enclosed ground.
A monkey is playing drums.|Someone in a gorilla costume is playing a set of drums.|The new movie is awesome.|The cat sits outside.
The new movie is so great.|A man is playing guitar.|The dog plays in the garden.|A woman watches TV.|The new film is fantastic.
How do I bake sourdough bread at home?|What is the capital city of Australia?|The stock market fell sharply after the announcement.
Researchers found a new species of frog in the rainforest.|The train to Berlin was delayed by two hours.
Please send me the quarterly report by Friday.|The quick brown fox jumps over the lazy dog.
Inference servers batch requests to use the hardware efficiently.|Quantization makes neural networks smaller and faster.
She scored the winning goal in the final minute.|The museum opens at nine in the morning.|My laptop battery drains too quickly.
Heavy rain is expected across the region tonight.|He forgot his umbrella on the bus.|The recipe calls for two cups of flour and one egg.
Our flight was cancelled because of the storm.|The children built a sandcastle on the beach.
Electric cars are becoming more affordable every year.|The committee approved the new budget yesterday.
I would like to book a table for four people.|The volcano erupted for the first time in a century.
A good night's sleep improves memory and focus.|The software update fixed several security bugs.
They planted tomatoes and basil in the backyard.|The orchestra performed Beethoven's ninth symphony.
The price of coffee has doubled since last year.|Satellites orbit the earth every ninety minutes.
The library lends books, music and films for free.|A cyclist was injured in a collision downtown.
The professor explained the theory with simple examples.|Water boils at one hundred degrees Celsius at sea level.
The startup raised ten million dollars in funding.|Our team won the championship after a tough season.
Dolphins communicate with clicks and whistles.|The hotel room had a beautiful view of the mountains.
He is learning to play the piano at age sixty.|The bridge will be closed for repairs next week.
Wildfires spread quickly in dry and windy conditions.|This phone takes excellent pictures in low light.
The farmer sells fresh eggs at the weekly market.|The detective solved the mystery in the last chapter.
Vaccines train the immune system to recognise viruses.|The bakery on the corner makes the best croissants.
The spacecraft landed safely on the surface of Mars.|Traffic was heavy on the highway this morning.
She wrote a letter to her grandmother in Italy.|The river flooded the village after days of rain.
A database index speeds up queries on large tables.""".replace("\n", "|").split("|")


def tokenize(vocab_path, sentences, seq):
    """BERT basic tokenizer + WordPiece with the shipped vocabulary (lowercase, no accents)."""
    vocab = {w.rstrip("\n"): i for i, w in enumerate(open(vocab_path, encoding="utf-8"))}

    def basic(text):
        text = unicodedata.normalize("NFD", text.lower())
        text = "".join(c for c in text if unicodedata.category(c) != "Mn")
        out, cur = [], ""
        for c in text:
            if c.isspace():
                if cur:
                    out.append(cur)
                cur = ""
            elif unicodedata.category(c).startswith("P") or (33 <= ord(c) <= 47 or 58 <= ord(c) <= 64 or 91 <= ord(c) <= 96 or 123 <= ord(c) <= 126):
                if cur:
                    out.append(cur)
                cur = ""
                out.append(c)
            else:
                cur += c
        if cur:
            out.append(cur)
        return out

    def wordpiece(word):
        toks, start = [], 0
        while start < len(word):
            end, cur = len(word), None
            while start < end:
                sub = ("##" if start else "") + word[start:end]
                if sub in vocab:
                    cur = sub
                    break
                end -= 1
            if cur is None:
                return ["[UNK]"]
            toks.append(cur)
            start = end
        return toks

    ids = np.zeros((len(sentences), seq), np.int64)
    mask = np.zeros_like(ids)
    for i, s in enumerate(sentences):
        t = ["[CLS]"] + [p for w in basic(s) for p in wordpiece(w)][: seq - 2] + ["[SEP]"]
        ids[i, : len(t)] = [vocab[x] for x in t]
        mask[i, : len(t)] = 1
    return {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}


def ort_session(path):
    import onnxruntime as ort

    o = ort.SessionOptions()
    o.intra_op_num_threads = 2
    o.inter_op_num_threads = 1
    o.log_severity_level = 3
    return ort.InferenceSession(path, o, providers=["CPUExecutionProvider"])


def ort_quantize(model, out, kind, calib=None):
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_dynamic, quantize_static

    if kind == "dynamic":
        quantize_dynamic(model, out, weight_type=QuantType.QInt8, per_channel=True, op_types_to_quantize=["MatMul", "Gather", "Gemm"])
        return

    class Reader(CalibrationDataReader):
        def __init__(self, feeds, bs=8):
            self.feeds, self.i, self.bs = feeds, 0, bs

        def get_next(self):
            n = len(next(iter(self.feeds.values())))
            if self.i >= n:
                return None
            b = {k: v[self.i : self.i + self.bs] for k, v in self.feeds.items()}
            self.i += self.bs
            return b

    # ORT's own advice for x86 without VNNI: U8 activations, S8 per-channel weights, reduce_range.
    quantize_static(model, out, Reader(calib), quant_format=QuantFormat.QDQ, per_channel=True, reduce_range=True,
                    activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)


def lrai_run(lrai, model, feeds, batch, backend, runs, tmp):
    path = os.path.join(tmp, f"in_b{batch}.npz")
    np.savez(path, **{k: np.ascontiguousarray(np.resize(v, (batch,) + v.shape[1:])) for k, v in feeds.items()})
    r = subprocess.run([lrai, "run", model, "-i", path, "--json", "--repeat", str(runs), "--warmup", "3",
                        "--backend", backend, "--intra-op-threads", "2"], capture_output=True, text=True,
                       env={**os.environ, "LRAI_LOG": "error"})
    if r.returncode != 0:
        return {"error": r.stderr.strip().splitlines()[-1] if r.stderr.strip() else "failed"}
    t = json.loads(r.stdout)["timing"]
    return {"median_ms": t["median_ms"], "per_s": t["inferences_per_s"]}


def interleaved(paths, feeds, rounds, threads=2):
    """Batch-8 ONNX Runtime timing robust to a shared machine: one run per model per round,
    the order rotating, so every model sees the same load; speedups over paths[0] as ratios
    of the medians, lower quartiles and fastest runs."""
    import onnxruntime as ort

    sess = []
    for p in paths:
        o = ort.SessionOptions()
        o.intra_op_num_threads = threads
        o.inter_op_num_threads = 1
        o.log_severity_level = 3
        s = ort.InferenceSession(p, o, providers=["CPUExecutionProvider"])
        f = {i.name: np.ascontiguousarray(np.resize(feeds[i.name], (8,) + feeds[i.name].shape[1:])) for i in s.get_inputs()}
        for _ in range(3):
            s.run(None, f)
        sess.append((s, f))
    t = [[] for _ in paths]
    for r in range(rounds):
        for k in [(r + j) % len(paths) for j in range(len(paths))]:
            s, f = sess[k]
            a = time.perf_counter()
            s.run(None, f)
            t[k].append(time.perf_counter() - a)
    b = np.array(t[0])
    out = []
    for x in t:
        x = np.array(x)
        out.append({"median_ms": float(np.median(x) * 1e3), "q25_ms": float(np.percentile(x, 25) * 1e3), "min_ms": float(x.min() * 1e3),
                    "speedup": [float(np.median(b) / np.median(x)), float(np.percentile(b, 25) / np.percentile(x, 25)), float(b.min() / x.min())]})
    return out


def agreement(f, q):
    cos = (f * q).sum(1) / np.linalg.norm(f, axis=1) / np.linalg.norm(q, axis=1)
    return {"top1_agreement": float((f.argmax(1) == q.argmax(1)).mean()), "cosine_mean": float(cos.mean()), "cosine_min": float(cos.min())}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", default="digits_mlp,digits_cnn,minilm_l6,mobilenet_v2")
    ap.add_argument("--models-dir", default=os.path.join(os.path.dirname(__file__), "../../shared/models"))
    ap.add_argument("--out", default="target/bench-quant")
    ap.add_argument("--lrai", default="target/release/lrai")
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--backends", default="onnxruntime,tract")
    ap.add_argument("--interleaved-rounds", type=int, default=0,
                    help="also time float/LRAI/ORT-tool at batch 8 on ONNX Runtime interleaved, this many rounds")
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)
    md = os.path.abspath(a.models_dir)
    results = []
    for name in a.models.split(","):
        src = os.path.join(md, f"{name}.onnx")
        mine = os.path.join(a.out, f"{name}.lrai.onnx")
        theirs = os.path.join(a.out, f"{name}.ort.onnx")
        cmd = [a.lrai, "quantize", src, "-o", mine, "--report", os.path.join(a.out, f"{name}.report.json"), "--latency-batch", "0"]
        if name.startswith("digits"):
            key = "x_flat" if name == "digits_mlp" else "x_img"
            calib = {"input": np.load(os.path.join(md, "digits_calib.npz"))[key]}
            test = np.load(os.path.join(md, "digits_test.npz"))
            evalf = {"input": test[key]}
            labels = test["y"]
            cmd += ["--calibration", os.path.join(md, "digits_calib.npz"), "--eval", os.path.join(md, "digits_test.npz")]
            kind, output = "static", "logits"
        elif name == "minilm_l6":
            evalf = tokenize(os.path.join(md, "minilm_l6_vocab.txt"), SENTENCES, 128)
            ev = os.path.join(a.out, "minilm_eval.npz")
            np.savez(ev, **evalf)
            # Attention-score MatMuls too: about 10 % faster at batch 8, cosine still >= 0.99.
            cmd += ["--mode", "dynamic", "--quantize-activation-matmuls", "--eval", ev, "--metric", "cosine",
                    "--eval-output", "sentence_embedding", "--batch-size", "8"]
            kind, output, labels, calib = "dynamic", "sentence_embedding", None, None
        else:
            rs = np.random.RandomState(1)
            calib = {"input": rs.randn(32, 3, 224, 224).astype(np.float32)}
            evalf = {"input": np.random.RandomState(2).randn(32, 3, 224, 224).astype(np.float32)}
            cf, ev = os.path.join(a.out, "mnv2_calib.npz"), os.path.join(a.out, "mnv2_eval.npz")
            np.savez(cf, **calib)
            np.savez(ev, **evalf)
            # Random weights: logits' top-2 gap is tiny, so the budget is on cosine (>= 0.99:
            # the most sensitive layers go back to float until it holds).
            cmd += ["--calibration", cf, "--calibration-method", "percentile", "--eval", ev, "--metric", "cosine",
                    "--max-accuracy-drop", "0.01", "--batch-size", "8"]
            kind, output, labels = "static", "logits", None
        t0 = time.time()
        r = subprocess.run(cmd, capture_output=True, text=True)
        lrai_s = time.time() - t0
        if r.returncode != 0:
            print(f"{name}: lrai quantize failed: {r.stderr[-500:]}", file=sys.stderr)
            continue
        t0 = time.time()
        ort_quantize(src, theirs, kind, calib)
        ort_s = time.time() - t0
        row = {"model": name, "quantize_s": {"lrai": lrai_s, "ort_tool": ort_s},
               "size_bytes": {p: os.path.getsize(f) for p, f in [("float", src), ("lrai", mine), ("ort_tool", theirs)]}}
        f = ort_session(src).run([output], evalf)[0]
        for tag, path in [("lrai", mine), ("ort_tool", theirs)]:
            q = ort_session(path).run([output], evalf)[0]
            m = agreement(f, q)
            if labels is not None:
                m["accuracy"] = float((q.argmax(1) == labels).mean())
                m["accuracy_float"] = float((f.argmax(1) == labels).mean())
            row[tag] = m
        row["throughput"] = []
        for backend in a.backends.split(","):
            for batch in (1, 8):
                for tag, path in [("float", src), ("lrai", mine), ("ort_tool", theirs)]:
                    if backend == "tract" and name == "minilm_l6" and batch == 8:
                        continue  # about 1 s per run in int8 on tract; skipped to keep the run short
                    t = lrai_run(a.lrai, path, evalf, batch, backend, a.runs if batch == 1 else max(5, a.runs // 3), a.out)
                    row["throughput"].append({"backend": backend, "batch": batch, "model": tag, **t})
        if a.interleaved_rounds > 0:
            tags = ["float", "lrai", "ort_tool"]
            r8 = interleaved([src, mine, theirs], evalf, a.interleaved_rounds)
            row["interleaved_b8_onnxruntime"] = dict(zip(tags, r8))
        results.append(row)
        print(json.dumps(row), flush=True)
    with open(os.path.join(a.out, "results.json"), "w") as fh:
        json.dump(results, fh, indent=1)


if __name__ == "__main__":
    main()
