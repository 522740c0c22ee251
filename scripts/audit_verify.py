#!/usr/bin/env python3
"""An independent verifier of LRAI audit logs, written from the format's description in
docs/security.md ("Audit log") and RFC 9162 alone: hashlib for SHA-256 and the
`cryptography` package for Ed25519. It shares no code with the Rust implementation.

    audit_verify.py LOG --pubkey KEY.pub [--since-head HEAD] [--allow-unsigned-tail]
    audit_verify.py --inclusion PROOF.json --pubkey KEY.pub   # output of `lrai audit prove`
    audit_verify.py --consistency PROOF.json --pubkey KEY.pub

Exit 0 when the log (or proof) verifies; 1 with the line and entry where it does not.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import struct
import sys
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

HEAD_CONTEXT = b"lrai-audit-tree-head-v1\x00"
HEX64 = re.compile(r"[0-9a-f]{64}")
HEX128 = re.compile(r"[0-9a-f]{128}")
EMPTY_ROOT = hashlib.sha256(b"").digest()


class VerifyError(Exception):
    def __init__(self, line: int, entry: int, reason: str):
        super().__init__(f"line {line} (entry {entry}): {reason}")
        self.line, self.entry, self.reason = line, entry, reason


# --- RFC 9162 §2.1 -----------------------------------------------------------------------

def leaf_hash(data: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def split(n: int) -> int:
    """The largest power of two smaller than n (n >= 2)."""
    k = 1
    while k * 2 < n:
        k *= 2
    return k


def mth(leaves: list[bytes]) -> bytes:
    if not leaves:
        return EMPTY_ROOT
    if len(leaves) == 1:
        return leaves[0]
    k = split(len(leaves))
    return node_hash(mth(leaves[:k]), mth(leaves[k:]))


def inclusion_path(m: int, leaves: list[bytes]) -> list[bytes]:
    n = len(leaves)
    if n <= 1:
        return []
    k = split(n)
    if m < k:
        return inclusion_path(m, leaves[:k]) + [mth(leaves[k:])]
    return inclusion_path(m - k, leaves[k:]) + [mth(leaves[:k])]


def consistency_path(m: int, leaves: list[bytes]) -> list[bytes]:
    def subproof(m: int, d: list[bytes], b: bool) -> list[bytes]:
        n = len(d)
        if m == n:
            return [] if b else [mth(d)]
        k = split(n)
        if m <= k:
            return subproof(m, d[:k], b) + [mth(d[k:])]
        return subproof(m - k, d[k:], False) + [mth(d[:k])]

    if m == 0 or m == len(leaves):
        return []
    return subproof(m, leaves, True)


def verify_inclusion(leaf: bytes, index: int, size: int, proof: list[bytes], root: bytes) -> bool:
    """RFC 9162 §2.1.3.2, step by step."""
    if index >= size:
        return False
    fn, sn, r = index, size - 1, leaf
    for p in proof:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            if not fn & 1:
                while not fn & 1 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    return sn == 0 and r == root


def verify_consistency(first: int, second: int, first_root: bytes, second_root: bytes,
                       proof: list[bytes]) -> bool:
    """RFC 9162 §2.1.4.2, step by step (plus the trivial sizes it leaves out)."""
    if first > second:
        return False
    if first == second:
        return not proof and first_root == second_root
    if first == 0:
        return not proof and first_root == EMPTY_ROOT
    if not proof:
        return False
    path = list(proof)
    if first & (first - 1) == 0:
        path.insert(0, first_root)
    fn, sn = first - 1, second - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            if not fn & 1:
                while not fn & 1 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    return fr == first_root and sr == second_root and sn == 0


class Tree:
    """The tree's right edge (perfect subtrees, largest first): O(log n) append and root."""

    def __init__(self):
        self.size = 0
        self.peaks: list[bytes] = []

    def push(self, leaf: bytes) -> None:
        h, s = leaf, self.size
        while s & 1:
            h = node_hash(self.peaks.pop(), h)
            s >>= 1
        self.peaks.append(h)
        self.size += 1

    def root(self) -> bytes:
        if not self.peaks:
            return EMPTY_ROOT
        r = self.peaks[-1]
        for left in reversed(self.peaks[:-1]):
            r = node_hash(left, r)
        return r


# --- heads and keys ----------------------------------------------------------------------

_verified: set[tuple[bytes, bytes, bytes]] = set()


def signature_ok(key: Ed25519PublicKey, raw_key: bytes, msg: bytes, sig: bytes) -> bool:
    # Memoised: a pure function, and the tampering test checks the same heads many times.
    if (raw_key, msg, sig) in _verified:
        return True
    try:
        key.verify(sig, msg)
    except InvalidSignature:
        return False
    _verified.add((raw_key, msg, sig))
    return True


def parse_head(obj) -> dict | None:
    """A head object with exactly its four fields, canonical lowercase hex; else None."""
    if not isinstance(obj, dict) or set(obj) != {"size", "time_ms", "root", "signature"}:
        return None
    size, time_ms, root, sig = obj["size"], obj["time_ms"], obj["root"], obj["signature"]
    for n in (size, time_ms):
        if type(n) is not int or not 0 <= n < 2**64:
            return None
    if not (isinstance(root, str) and HEX64.fullmatch(root)):
        return None
    if not (isinstance(sig, str) and HEX128.fullmatch(sig)):
        return None
    return obj


def head_ok(head: dict, key: Ed25519PublicKey, raw_key: bytes) -> bool:
    msg = HEAD_CONTEXT + struct.pack(">QQ", head["size"], head["time_ms"]) + bytes.fromhex(head["root"])
    return signature_ok(key, raw_key, msg, bytes.fromhex(head["signature"]))


def load_pubkey(text: str) -> tuple[Ed25519PublicKey, bytes]:
    raw = bytes.fromhex(text.strip())
    if len(raw) != 32:
        raise ValueError("a public key is 32 bytes (64 hex digits)")
    return Ed25519PublicKey.from_public_bytes(raw), raw


def read_saved_head(text: bytes) -> dict:
    doc = json.loads(text)
    head = parse_head(doc.get("head")) if isinstance(doc, dict) and set(doc) == {"head"} else None
    if head is None:
        raise ValueError("not a saved tree head ({\"head\": {...}})")
    return head


# --- the log -----------------------------------------------------------------------------

def verify_log(data: bytes, pubkey: tuple[Ed25519PublicKey, bytes], since: dict | None = None,
               allow_unsigned_tail: bool = False) -> dict:
    """Verifies a whole log held in `data`; returns a summary or raises VerifyError."""
    key, raw_key = pubkey
    if since is not None and not head_ok(since, key, raw_key):
        raise VerifyError(0, 0, "the saved head's signature does not verify with the public key")
    lines = data.split(b"\n")
    if lines[-1] != b"":
        raise VerifyError(len(lines), -1, "the file does not end with a newline (cut short)")
    lines.pop()
    tree, last, heads, saved_seen = Tree(), None, 0, False

    def check_saved(line_no: int) -> None:
        nonlocal saved_seen
        if since is not None and not saved_seen and tree.size == since["size"]:
            saved_seen = True
            if tree.root().hex() != since["root"]:
                raise VerifyError(line_no, tree.size,
                                  f"the first {since['size']} entries do not hash to the saved "
                                  "head's root: the history was rewritten (a fork)")

    check_saved(0)
    for line_no, line in enumerate(lines, start=1):
        entry = tree.size
        try:
            doc = json.loads(line)
        except (ValueError, UnicodeDecodeError) as e:
            raise VerifyError(line_no, entry, f"not JSON: {e}") from None
        if not isinstance(doc, dict):
            raise VerifyError(line_no, entry, "not a JSON object")
        if "head" in doc:
            head = parse_head(doc["head"]) if set(doc) == {"head"} else None
            if head is None:
                raise VerifyError(line_no, entry, "malformed tree head")
            if not line.startswith(b'{"head":'):
                raise VerifyError(line_no, entry, "a head line must start with {\"head\":")
            if not head_ok(head, key, raw_key):
                raise VerifyError(line_no, entry, "the head's signature does not verify")
            if head["size"] != entry:
                raise VerifyError(line_no, entry, f"the head covers {head['size']} entries, {entry} precede it")
            if head["root"] != tree.root().hex():
                raise VerifyError(line_no, entry, "the head's root is not the root of the entries before it")
            if last is not None and head["time_ms"] < last["time_ms"]:
                raise VerifyError(line_no, entry, "the head's time goes backwards")
            last, heads = head, heads + 1
            continue
        index = doc.get("index")
        if type(index) is not int or index != entry:
            raise VerifyError(line_no, entry, f"entry says index {index!r}, expected {entry}")
        tree.push(leaf_hash(line))
        check_saved(line_no)
    signed = last["size"] if last else 0
    if last is None and not allow_unsigned_tail:
        raise VerifyError(len(lines), tree.size, "no signed tree head")
    if tree.size > signed and not allow_unsigned_tail:
        raise VerifyError(len(lines), signed, f"{tree.size - signed} entries after the last signed head")
    if since is not None and (not saved_seen or since["size"] > signed):
        raise VerifyError(len(lines), tree.size,
                          f"the saved head covers {since['size']} entries, the log's signed heads {signed} (truncated)")
    return {"entries": tree.size, "heads": heads, "last_head": last}


def check_proof_doc(doc: dict, kind: str, pubkey) -> None:
    """Checks a `lrai audit prove` output: the proof against its roots, and the roots
    against the signed heads it carries."""
    unhex = bytes.fromhex
    if kind == "inclusion":
        ok = verify_inclusion(unhex(doc["leaf_hash"]), doc["index"], doc["size"],
                              [unhex(p) for p in doc["proof"]], unhex(doc["root"]))
        heads = [("root", doc.get("head"))]
    else:
        ok = verify_consistency(doc["from"], doc["to"], unhex(doc["from_root"]), unhex(doc["to_root"]),
                                [unhex(p) for p in doc["proof"]])
        heads = [("from_root", doc.get("from_head")), ("to_root", doc.get("to_head"))]
    if not ok:
        raise VerifyError(0, doc.get("index", doc.get("from", 0)), f"the {kind} proof does not verify")
    for field, head in heads:
        if head is not None and (head["root"] != doc[field] or not head_ok(head, *pubkey)):
            raise VerifyError(0, 0, f"the signed head does not sign {field}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("log", nargs="?", type=Path)
    ap.add_argument("--pubkey", type=Path, required=True)
    ap.add_argument("--since-head", type=Path)
    ap.add_argument("--allow-unsigned-tail", action="store_true")
    ap.add_argument("--inclusion", type=Path, help="check a `lrai audit prove --index` output")
    ap.add_argument("--consistency", type=Path, help="check a `lrai audit prove --consistency` output")
    args = ap.parse_args()
    pubkey = load_pubkey(args.pubkey.read_text())
    try:
        if args.inclusion or args.consistency:
            kind = "inclusion" if args.inclusion else "consistency"
            check_proof_doc(json.loads((args.inclusion or args.consistency).read_text()), kind, pubkey)
            print(f"{kind} proof verifies")
            return 0
        if args.log is None:
            ap.error("give a LOG, or --inclusion/--consistency")
        since = read_saved_head(args.since_head.read_bytes()) if args.since_head else None
        summary = verify_log(args.log.read_bytes(), pubkey, since, args.allow_unsigned_tail)
    except VerifyError as e:
        print(f"error: audit log '{args.log}' fails verification at {e}", file=sys.stderr)
        return 1
    print(json.dumps({"verified": True, **summary}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
