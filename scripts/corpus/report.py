"""Per-model rows, the markdown table for docs/compat.md, the summary figures and the CI gate."""

from __future__ import annotations

import json
from pathlib import Path

import common
import manifest

SEVERITY = ["panic", "wrong answer", "run failure", "load failure"]
SHORT = {"match": "✅ match", "wrong answer": "❌ wrong", "run failure": "⚠️ run", "load failure": "⚠️ load", "panic": "💥 panic"}


def _worst(cases: list) -> tuple[str, str]:
    """The model's result on one backend: match only if every case matched."""
    for result in SEVERITY:
        for c in cases:
            if c.result == result:
                where = f"b{c.batch}" + (f" x{c.repeat}" if c.repeat > 1 else "")
                return result, f"{where}: {c.reason}"
    return ("match", "") if cases else ("not run", "")


def model_rows(models: list[manifest.Model], cases: list) -> list[dict]:
    rows = []
    for m in models:
        meta = json.loads((common.refs_dir(m.id) / "meta.json").read_text())
        row = {"id": m.id, "source": manifest.source_text(m), "opset": meta["opset"], "ops": meta["ops"],
               "batches": meta["batches"], "size": m.size, "tags": list(m.tags)}
        if isinstance(m.source, manifest.Package):
            row["license"] = m.source.license
        mine = [c for c in cases if c.model == m.id]
        for backend in ("onnxruntime", "tract", "auto"):
            row[backend], row[f"{backend}_reason"] = _worst([c for c in mine if c.backend == backend])
        inspect_panic = [c for c in mine if c.backend == "inspect"]
        row["inspect_panic"] = inspect_panic[0].reason if inspect_panic else ""
        rows.append(row)
    return rows


def _cell(text: str, limit: int = 260) -> str:
    """Long tract errors nest node after node: keep the outer node and the innermost cause."""
    text = text.replace("|", "\\|").replace("\n", " ")
    if len(text) <= limit:
        return text
    half = (limit - 3) // 2
    return f"{text[:half]} … {text[-half:]}"


def _ops(ops: list[str], shown: int = 8) -> str:
    return ", ".join(ops[:shown]) + (f" +{len(ops) - shown}" if len(ops) > shown else "")


def markdown(rows: list[dict]) -> str:
    lines = [
        "| model | source | opset | ops (most used first) | ONNX Runtime | tract | auto | reason |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        reasons = []
        for backend, label in (("onnxruntime", "ORT"), ("tract", "tract"), ("auto", "auto")):
            if r[f"{backend}_reason"] and not (backend == "auto" and r["auto_reason"] == r["onnxruntime_reason"]):
                reasons.append(f"{label} {r[f'{backend}_reason']}")
        if r["inspect_panic"]:
            reasons.append(f"inspect panics: {r['inspect_panic']}")
        lines.append(
            f"| `{r['id']}` | {r['source']} | {r['opset']} | {_ops(r['ops'])} | {SHORT.get(r['onnxruntime'], r['onnxruntime'])} "
            f"| {SHORT.get(r['tract'], r['tract'])} | {SHORT.get(r['auto'], r['auto'])} | {_cell('; '.join(reasons))} |"
        )
    return "\n".join(lines) + "\n"


def _pct(n: int, d: int) -> str:
    return f"{n}/{d} ({100 * n / d:.0f}%)" if d else "0/0"


def summary(rows: list[dict], cases: list) -> str:
    ort_cases = [c for c in cases if c.backend == "onnxruntime"]
    panics = [c for c in cases if c.result == "panic"]
    lines = [
        f"models: {len(rows)}",
        f"onnxruntime: cases match {_pct(sum(c.result == 'match' for c in ort_cases), len(ort_cases))}, "
        f"models match {_pct(sum(r['onnxruntime'] == 'match' for r in rows), len(rows))}",
        f"tract: models load and match {_pct(sum(r['tract'] == 'match' for r in rows), len(rows))}, "
        f"load {_pct(sum(r['tract'] not in ('load failure', 'panic') for r in rows), len(rows))}, "
        f"wrong answers {sum(r['tract'] == 'wrong answer' for r in rows)}",
        f"auto: models match {_pct(sum(r['auto'] == 'match' for r in rows), len(rows))}",
        f"panics: {len(panics)} cases in {len({c.model for c in panics})} models",
    ]
    return "\n".join(lines)


def gate(rows: list[dict], cases: list, expected_path: Path | None) -> list[str]:
    """What fails CI: an onnxruntime case that doesn't match, a panic, a tract or auto result unlike the list."""
    failures = [f"{c.model} onnxruntime b{c.batch} x{c.repeat}: {c.result}: {c.reason}" for c in cases
                if c.backend == "onnxruntime" and c.result != "match"]
    failures += [f"{c.model} {c.backend} b{c.batch} x{c.repeat}: panic: {c.reason}" for c in cases
                 if c.result == "panic" and c.backend != "onnxruntime"]
    if expected_path is None:
        return failures
    expected = json.loads(expected_path.read_text())
    for r in rows:
        for backend in ("tract", "auto"):
            want = expected.get(backend, {}).get(r["id"], {}).get("result", "match")
            if r[backend] != want:
                kind = "unexpected pass (take it off the list)" if r[backend] == "match" else "regression"
                failures.append(f"{r['id']} {backend}: {kind}: expected {want}, got {r[backend]}: {r[f'{backend}_reason']}")
    return failures


START, END = "<!-- corpus:start -->", "<!-- corpus:end -->"


def update_doc(path: Path, summary_text: str, table: str, command: str) -> None:
    """Replace what lies between the markers in the doc with the figures and the table."""
    text = path.read_text()
    if START not in text or END not in text:
        raise SystemExit(f"'{path}' has no '{START}' ... '{END}' markers")
    head, rest = text.split(START, 1)
    _, tail = rest.split(END, 1)
    body = f"{START}\n\n`{command}`:\n\n```\n{summary_text}\n```\n\n{table}\n{END}"
    path.write_text(head + body + tail)


def write_expected(path: Path, rows: list[dict]) -> None:
    """Record today's tract and auto failures of the models just run, for the gate.

    Entries of models not in this run are kept, so `--only ID` updates one model."""
    doc = json.loads(path.read_text()) if path.exists() else {}
    doc["about"] = ("Corpus models known not to match on a backend; scripts/corpus/check.py --expected fails "
                    "when a result differs from this list (a regression, or a fix: then take the model off).")
    for backend in ("tract", "auto"):
        entries = doc.setdefault(backend, {})
        for r in rows:
            entries.pop(r["id"], None)
            if r[backend] != "match":
                entries[r["id"]] = {"result": r[backend], "reason": r[f"{backend}_reason"][:300]}
    path.write_text(json.dumps(doc, indent=1, ensure_ascii=False) + "\n")
