"""What a result was computed from: fingerprints of the CounterFact file, the model and the package.

A run folder records them in its config.json; a resume, a `reproduce` cache hit and `assocmem verify`
compare them, so rows scored on one file or model never mix with rows scored on another.

    counterfact  {"path", "sha256", "bytes", "copy"}: copy is "official" (ROME's file, by its known
                 sha256), "reconstructed" (our offline copy: relation ids inferred) or "other"
    model        {"spec", "kind", "name", "sha256" of the weights (GGUF, or the folder's weight and
                 tokenizer files), or "commit" for a hub model (known once loaded)}
    assocmem     the package version

File hashes are cached by (path, size, modification time) in the user cache, so a 14 GB checkpoint
is read once, not at every resume.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from assocmem import __version__

COUNTERFACT_COPIES = {
    "d017056125178a13728594e66a801357a8db9ed7973a7425554bb4271de9fc6f": "official",
    "ab77589ea80c4ed0f38585876f2ca82ac027051ec3a0e5eda7a392d47c4b808e": "reconstructed",
}
_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".gguf", ".pt", ".json", ".model", ".txt")


def _cache_file() -> Path:
    from assocmem.models.llm import cache_root

    return cache_root() / "sha256.json"


def sha256_file(path: str | Path) -> str:
    """sha256 of a file's bytes, remembered per (path, size, mtime) in the user cache."""
    path = Path(path).resolve()
    st = path.stat()
    key = f"{path}:{st.st_size}:{st.st_mtime_ns}"
    cache_path = _cache_file()
    try:
        cache = json.loads(cache_path.read_text())
    except (OSError, ValueError):
        cache = {}
    if key in cache:
        return cache[key]
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 22):
            h.update(chunk)
    cache[key] = h.hexdigest()
    try:
        from assocmem.io import write_json

        write_json(cache_path, cache)
    except OSError:  # a read-only cache only costs a re-hash next time
        pass
    return cache[key]


def counterfact_fingerprint(path: str | Path) -> dict[str, Any]:
    path = Path(path).expanduser().resolve()
    digest = sha256_file(path)
    return {"path": str(path), "sha256": digest, "bytes": path.stat().st_size,
            "copy": COUNTERFACT_COPIES.get(digest, "other")}


def model_fingerprint(spec: str) -> dict[str, Any]:
    """Identity of `spec`'s weights, without loading the model (a hub model's commit comes later:
    `hub_commit`)."""
    from assocmem.models.llm import resolve_model

    source = resolve_model(spec)
    out: dict[str, Any] = {"spec": str(spec), "kind": source.kind, "name": source.name}
    if source.package:
        out["package"] = source.package
    if source.kind in ("bundled", "gguf"):
        out["sha256"] = sha256_file(source.path)
    elif source.kind == "local":
        files = sorted(p for p in source.path.rglob("*") if p.is_file() and p.suffix in _WEIGHT_SUFFIXES)
        h = hashlib.sha256()
        for p in files:
            h.update(f"{p.relative_to(source.path)}:{sha256_file(p)}\n".encode())
        out["sha256"] = h.hexdigest()
    elif source.kind == "tiny":
        out["sha256"] = "seeded random init (tiny_random_lm, seed 0)"
    return out


def tokenizer_fingerprint(lm) -> str | None:
    """sha256 of the loaded tokenizer's own serialisation: the same weights can come with another
    tokenizer (e.g. another transformers version's GGUF conversion), and the targets' tokens with it."""
    backend = getattr(lm.tokenizer, "backend_tokenizer", None)
    if backend is None:
        return None
    return hashlib.sha256(backend.to_str().encode()).hexdigest()


def hub_commit(lm) -> str | None:
    """The hub revision a loaded model came from (transformers records it on the config)."""
    return getattr(lm.model.config, "_commit_hash", None)


def package_fingerprint() -> str:
    return __version__


def fingerprints(counterfact: str | Path, model: str) -> dict[str, Any]:
    return {"counterfact": counterfact_fingerprint(counterfact), "model": model_fingerprint(model),
            "assocmem": package_fingerprint()}


def what_changed(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """Human-readable differences between two fingerprint dicts (empty when they agree)."""
    changes = []
    oc, nc = old.get("counterfact", {}), new.get("counterfact", {})
    if oc.get("sha256") != nc.get("sha256"):
        changes.append(f"the CounterFact file (sha256 {str(oc.get('sha256'))[:12]}… then, "
                       f"{str(nc.get('sha256'))[:12]}… now, {nc.get('path')})")
    om, nm = old.get("model", {}), new.get("model", {})
    for key in ("kind", "sha256", "commit", "tokenizer"):
        loaded_only = key in ("commit", "tokenizer")   # known once the model is loaded: compared when both are
        if (key in om and key in nm) if loaded_only else (key in om or key in nm):
            if om.get(key) != nm.get(key):
                changes.append(f"the model's {key} ({str(om.get(key))[:16]} then, {str(nm.get(key))[:16]} now)")
    if old.get("assocmem") != new.get("assocmem"):
        changes.append(f"the assocmem version ({old.get('assocmem')} then, {new.get('assocmem')} now)")
    return changes


def short(fp: dict[str, Any]) -> str:
    """One line for a report header: file, copy, sha256 prefix; model kind and hash prefix."""
    c, m = fp.get("counterfact", {}), fp.get("model", {})
    ident = m.get("commit") or m.get("sha256", "")
    return (f"CounterFact {os.path.basename(str(c.get('path')))} ({c.get('copy')}, sha256 {str(c.get('sha256'))[:12]}…); "
            f"model {m.get('spec')} ({m.get('kind')}, {str(ident)[:12]}…)")
