"""The audit log against an independent verifier (scripts/audit_verify.py: hashlib and
`cryptography`, no LRAI code). A real `lrai serve` writes the log over two runs (admin
actions over HTTP, inferences with --audit-inference, SIGTERM); then:

- every honest log (the whole log, and the log as it stood at each signed head) verifies,
  in Python and with `lrai audit verify`, with and without the head an auditor saved;
- `lrai audit prove` proofs verify with the RFC 9162 algorithms written in Python, and
  equal the proofs Python computes itself;
- 10,000 random tamperings (bit flip, deleted entry, reordered entries, truncation and
  re-extension, a forked history signed twice with the real key) are all detected, and a
  sample of them by `lrai audit verify` too.

Run: python -m pytest scripts/test_audit_verify.py (LRAI_BIN, default target/release/lrai).
"""

from __future__ import annotations

import json
import os
import random
import re
import signal
import struct
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

sys.path.insert(0, str(Path(__file__).resolve().parent))
import audit_verify as av  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
LRAI = os.environ.get("LRAI_BIN", str(ROOT / "target/release/lrai"))
TRIALS = 10_000


def post(url: str, body: bytes = b"") -> tuple[int, bytes]:
    req = urllib.request.Request(url, data=body, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


class Server:
    def __init__(self, tmp: Path, log: Path, key: Path, run: int):
        self.stderr = tmp / f"serve-{run}.log"
        args = [LRAI, "serve", "--model-repository", str(ROOT / "examples/models"), "--backend", "tract",
                "--address", "127.0.0.1", "--http-port", "0", "--grpc-port", "0", "--metrics-port", "0",
                "--model-control-mode", "explicit", "--load-model", "digits_mlp",
                "--audit-log", str(log), "--audit-key", str(key), "--audit-inference", "--audit-head-secs", "0"]
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=open(self.stderr, "wb"))
        deadline = time.time() + 120
        self.url = None
        while time.time() < deadline and self.proc.poll() is None:
            m = re.search(r"listening http=(\S+)", self.stderr.read_text(errors="replace"))
            if m and self.url is None:
                self.url = f"http://{m.group(1)}"
            if self.url:
                try:
                    with urllib.request.urlopen(self.url + "/v2/health/ready", timeout=5) as r:
                        if r.status == 200:
                            return
                except OSError:
                    pass
            time.sleep(0.2)
        self.proc.kill()
        raise RuntimeError("lrai serve did not become ready:\n" + self.stderr.read_text(errors="replace"))

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        assert self.proc.wait(timeout=60) == 0, self.stderr.read_text(errors="replace")


def entries_of(log: Path) -> list[dict]:
    return [d for d in map(json.loads, log.read_bytes().splitlines()) if "head" not in d]


def infer_body(x: float) -> bytes:
    return json.dumps({"inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 64],
                                   "data": [x] * 64}]}).encode()


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("audit")
    key, log = tmp / "audit.key", tmp / "audit.log"
    subprocess.run([LRAI, "audit", "keygen", str(key)], check=True, capture_output=True)
    # Run 1: admin actions, each in the file (durable) when its reply arrives.
    s = Server(tmp, log, key, 1)
    try:
        for path, action in [("unload", "unload"), ("load", "load"), ("rollback", "rollback")]:
            code, _ = post(f"{s.url}/v2/repository/models/digits_mlp/{path}")
            last = entries_of(log)[-1]
            assert (last["action"], last["model"]) == (action, "digits_mlp"), last
            assert last["outcome"] == ("ok" if code == 200 else last["outcome"])
            assert (code == 200) == (last["outcome"] == "ok"), (code, last)
        code, _ = post(f"{s.url}/v2/repository/models/no_such_model/load")
        assert code == 404 and entries_of(log)[-1]["outcome"].startswith("error: ")
        for i in range(40):
            code, _ = post(f"{s.url}/v2/models/digits_mlp/infer", infer_body(i / 40))
            assert code == 200
    finally:
        s.stop()
    saved = tmp / "head-1.json"
    subprocess.run([LRAI, "audit", "verify", str(log), "--pubkey", f"{key}.pub", "--save-head", str(saved)],
                   check=True, capture_output=True)
    # Run 2 continues the same log; SIGTERM right after the last reply loses nothing.
    s = Server(tmp, log, key, 2)
    try:
        for i in range(20):
            assert post(f"{s.url}/v2/models/digits_mlp/infer", infer_body(-i / 20))[0] == 200
        assert post(f"{s.url}/v2/repository/models/digits_mlp/unload")[0] == 200
    finally:
        s.stop()
    entries = entries_of(log)
    kinds = [e["kind"] for e in entries]
    assert kinds.count("inference") == 60, kinds
    assert [e.get("action") for e in entries if e["kind"] == "admin"][-2:] == ["unload", "server_stop"]
    pub = av.load_pubkey(Path(f"{key}.pub").read_text())
    return {"tmp": tmp, "key": key, "log": log, "saved": saved, "pub": pub,
            "since": av.read_saved_head(saved.read_bytes()), "data": log.read_bytes()}


def honest_prefixes(data: bytes) -> list[bytes]:
    """The log as it stood after each signed head."""
    out, pos = [], 0
    for line in data.splitlines(keepends=True):
        pos += len(line)
        if line.startswith(b'{"head":'):
            out.append(data[:pos])
    return out


def test_every_honest_log_verifies(world):
    prefixes = honest_prefixes(world["data"])
    assert len(prefixes) >= 8  # a head per write batch (group commit), and two runs
    for p in prefixes:
        if av.verify_log(p, world["pub"])["entries"] >= world["since"]["size"]:
            av.verify_log(p, world["pub"], world["since"])
        else:  # older than the auditor's head: to the auditor, a truncation
            with pytest.raises(av.VerifyError, match="truncated"):
                av.verify_log(p, world["pub"], world["since"])
    summary = av.verify_log(world["data"], world["pub"], world["since"])
    assert summary["entries"] == len(entries_of(world["log"]))
    for args in ([], ["--since-head", str(world["saved"])]):
        r = subprocess.run([LRAI, "audit", "verify", str(world["log"]), "--pubkey", f"{world['key']}.pub", *args],
                           capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
        assert json.loads(r.stdout)["entries"] == summary["entries"]


def test_rust_proofs_verify_in_python_and_match_its_own(world):
    log, pub = world["log"], world["pub"]
    leaves = [av.leaf_hash(line) for line in world["data"].splitlines() if not line.startswith(b'{"head":')]
    n = len(leaves)
    rng = random.Random(7)
    for index in sorted(rng.sample(range(n), 12)) + [0, n - 1]:
        doc = json.loads(subprocess.run([LRAI, "audit", "prove", str(log), "--index", str(index)],
                                        check=True, capture_output=True, text=True).stdout)
        av.check_proof_doc(doc, "inclusion", pub)
        assert doc["head"] is not None and doc["size"] == n
        assert [bytes.fromhex(h) for h in doc["proof"]] == av.inclusion_path(index, leaves)
        assert len(doc["proof"]) * 32 <= 32 * (n - 1).bit_length()
    for first in sorted(rng.sample(range(1, n), 8)) + [world["since"]["size"]]:
        doc = json.loads(subprocess.run([LRAI, "audit", "prove", str(log), "--consistency", "--from", str(first)],
                                        check=True, capture_output=True, text=True).stdout)
        av.check_proof_doc(doc, "consistency", pub)
        assert [bytes.fromhex(h) for h in doc["proof"]] == av.consistency_path(first, leaves)
        assert av.verify_consistency(first, n, av.mth(leaves[:first]), av.mth(leaves), av.consistency_path(first, leaves))


# --- tampering ----------------------------------------------------------------------------

def is_head(line: bytes) -> bool:
    return line.startswith(b'{"head":')


def bit_flip(rng, data, world):
    pos = rng.randrange(len(data))
    b = bytearray(data)
    b[pos] ^= 1 << rng.randrange(8)
    return bytes(b)


def delete_entry(rng, data, world):
    lines = data.splitlines(keepends=True)
    i = rng.choice([k for k, line in enumerate(lines) if not is_head(line)])
    return b"".join(lines[:i] + lines[i + 1:])


def reorder_entries(rng, data, world):
    lines = data.splitlines(keepends=True)
    idx = [k for k, line in enumerate(lines) if not is_head(line)]
    i, j = rng.sample(idx, 2)
    lines[i], lines[j] = lines[j], lines[i]
    return b"".join(lines)


def forged_entry(index: int, rng) -> bytes:
    return json.dumps({"index": index, "time_ms": 1, "kind": "admin", "action": "load",
                       "model": f"m{rng.randrange(1000)}", "caller": "anonymous", "outcome": "ok"},
                      separators=(",", ":")).encode() + b"\n"


def truncate_and_extend(rng, data, world):
    """Cut the log anywhere, then append forged entries continuing the indices, with no
    head, a head signed by another key, or the last genuine head copied."""
    cut = rng.randrange(1, len(data))
    if rng.random() < 0.7:  # at a line boundary, the interesting case
        cut = data.rfind(b"\n", 0, cut) + 1 or 1
    kept = data[:cut]
    n = sum(1 for line in kept.splitlines() if not is_head(line))
    if not kept.endswith(b"\n"):
        kept += b"\n"
    extra = b"".join(forged_entry(n + k, rng) for k in range(rng.randint(1, 4)))
    mode = rng.randrange(3)
    if mode == 1:
        other = Ed25519PrivateKey.from_private_bytes(bytes(rng.randrange(256) for _ in range(32)))
        size = n + extra.count(b"\n")
        leaves = [av.leaf_hash(line) for line in (kept + extra).splitlines() if not is_head(line)]
        extra += sign_head(other, size, av.mth(leaves))
    elif mode == 2:
        extra += [line for line in data.splitlines(keepends=True) if is_head(line)][-1]
    return kept + extra


def sign_head(key: Ed25519PrivateKey, size: int, root: bytes) -> bytes:
    t = 1_900_000_000_000
    sig = key.sign(av.HEAD_CONTEXT + struct.pack(">QQ", size, t) + root)
    return json.dumps({"head": {"size": size, "time_ms": t, "root": root.hex(), "signature": sig.hex()}},
                      separators=(",", ":")).encode() + b"\n"


def forked_history(rng, data, world):
    """The holder of the real key rewrites an entry the auditor's saved head covers and
    signs every head again: the log verifies alone, not against the saved head."""
    key = Ed25519PrivateKey.from_private_bytes(bytes.fromhex(world["key"].read_text().strip()))
    victim = rng.randrange(world["since"]["size"])
    out, leaves = [], []
    for line in data.splitlines():
        if is_head(line):
            out.append(sign_head(key, len(leaves), av.mth(leaves)).rstrip(b"\n"))
            continue
        doc = json.loads(line)
        if doc["index"] == victim:
            doc["caller"] = f"someone-else-{rng.randrange(10**6)}"
            line = json.dumps(doc, separators=(",", ":")).encode()
        leaves.append(av.leaf_hash(line))
        out.append(line)
    forged = b"\n".join(out) + b"\n"
    av.verify_log(forged, world["pub"])  # signed by the real key: consistent alone
    return forged


KINDS = [bit_flip, delete_entry, reorder_entries, truncate_and_extend, forked_history]


def test_ten_thousand_tamperings_are_all_detected(world):
    rng = random.Random(16)
    data, pub, since = world["data"], world["pub"], world["since"]
    detected = {k.__name__: 0 for k in KINDS}
    samples = []
    forks = {}
    for trial in range(TRIALS):
        kind = KINDS[trial % len(KINDS)]
        if kind is forked_history and len(forks) < 50:
            forks[trial] = kind(rng, data, world)
            bad = forks[trial]
        elif kind is forked_history:
            bad = rng.choice(list(forks.values()))  # re-signing is slow; reuse the forks
        else:
            bad = kind(rng, data, world)
        assert bad != data
        with pytest.raises(av.VerifyError):
            av.verify_log(bad, pub, since)
        detected[kind.__name__] += 1
        if trial % 100 == 0:
            samples.append(bad)
    assert sum(detected.values()) == TRIALS, detected
    # The Rust verifier agrees on a sample (each kind appears in it).
    path = world["tmp"] / "tampered.log"
    for bad in samples:
        path.write_bytes(bad)
        r = subprocess.run([LRAI, "audit", "verify", str(path), "--pubkey", f"{world['key']}.pub",
                            "--since-head", str(world["saved"])], capture_output=True, text=True)
        assert r.returncode == 1 and "audit log" in r.stderr, r.stderr
    print(f"detected {detected} of {TRIALS}; lrai audit verify agreed on {len(samples)} samples")
