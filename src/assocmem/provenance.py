"""What a result was computed from: fingerprints of the CounterFact file, the model and the package.

A run folder records them in its config.json; a resume, a `reproduce` cache hit and `assocmem verify`
compare them, so rows scored on one file or model never mix with rows scored on another.

    counterfact  {"path", "sha256", "bytes", "copy"}: copy is "official" (ROME's file, by its known
                 sha256), "reconstructed" (our offline copy: relation ids inferred) or "other"
    model        {"spec", "kind", "name", "sha256" of the weights (GGUF, or the folder's weight and
                 tokenizer files), or "commit" for a hub model (known once loaded)}
    assocmem     the package version
    code         `code_fingerprint` of the functions that compute the rows: a resume by other code is refused

An experiment of `reproduce` keys its cache on the `code_fingerprint` of its own functions in the same way.
File hashes are cached by (path, size, modification time) in the user cache, so a 14 GB checkpoint
is read once, not at every resume.
"""

from __future__ import annotations

import ast
import functools
import hashlib
import importlib.util
import inspect
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from assocmem import __version__

if TYPE_CHECKING:
    from assocmem.models.llm import LoadedLM

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


def weights_fingerprint(model) -> str:
    """sha256 of a model's weights as they are in memory (every parameter and buffer by name, their bytes
    in their own dtype): the identity of a model built or changed in memory, which no file describes."""
    import torch

    h = hashlib.sha256()
    for name, tensor in model.state_dict().items():
        data = tensor.detach().reshape(-1).contiguous().view(torch.uint8).cpu().numpy()
        h.update(f"{name}:{tensor.dtype}:{tuple(tensor.shape)}\n".encode())
        h.update(memoryview(data))
    return h.hexdigest()


def tokenizer_fingerprint(lm: LoadedLM) -> str | None:
    """sha256 of the loaded tokenizer's own serialisation: the same weights can come with another
    tokenizer (e.g. another transformers version's GGUF conversion), and the targets' tokens with it."""
    backend = getattr(lm.tokenizer, "backend_tokenizer", None)
    if backend is None:
        return None
    return hashlib.sha256(backend.to_str().encode()).hexdigest()


def hub_commit(lm: LoadedLM) -> str | None:
    """The hub revision a loaded model came from (transformers records it on the config)."""
    return getattr(lm.model.config, "_commit_hash", None)


def fingerprints(counterfact: str | Path, model: str, code: str) -> dict[str, Any]:
    """What a hijacking run folder records; `code`: the `code_fingerprint` of what computes its rows."""
    return {"counterfact": counterfact_fingerprint(counterfact), "model": model_fingerprint(model),
            "assocmem": __version__, "code": code}


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
    if old.get("code") != new.get("code"):
        changes.append(f"code that computes the rows ({old.get('code') or 'not recorded'} then, {new.get('code')} now)")
    return changes


def short(fp: dict[str, Any]) -> str:
    """One line for a report header: file, copy, sha256 prefix; model kind and hash prefix."""
    c, m = fp.get("counterfact", {}), fp.get("model", {})
    ident = m.get("commit") or m.get("sha256", "")
    return (f"CounterFact {os.path.basename(str(c.get('path')))} ({c.get('copy')}, sha256 {str(c.get('sha256'))[:12]}…); "
            f"model {m.get('spec')} ({m.get('kind')}, {str(ident)[:12]}…)")


# ---------------------------------------------------------------- code

PACKAGE = "assocmem"
_DATA_DIR = Path(__file__).resolve().parent / "data"


def code_fingerprint(*roots: Any, fine: tuple[str, ...] = ()) -> str:
    """A hash (16 hex digits) of the code that computes with `roots` (functions or classes).

    In the module of each root, and in every package module under a `fine` prefix, only what is reached
    counts: the root's own definition, then each top-level definition (function, class, constant) of that
    module whose name a counted definition reads, and so on. A name imported from another package module
    is followed there when that module is fine, else it brings the whole module, with every package module
    that one imports (the library counts by module). The package's data files that counted code names
    (e.g. "relation_templates.json") count by content. Comments, docstrings and layout do not count.

    So one line changed in one experiment's function changes that experiment's hash only; one line of the
    library changes the hash of everything that imports it.
    """
    walk = _CodeWalk(fine, {inspect.unwrap(r).__module__ for r in roots})
    for root in map(inspect.unwrap, roots):
        walk.reach(root.__module__, getattr(root, "__qualname__", root.__name__).split(".")[0])
    return walk.digest()


def package_fingerprint() -> str:
    """A hash (16 hex digits) of the whole package's code and data files, counted as `code_fingerprint` does."""
    walk = _CodeWalk((), set())
    top = Path(__file__).resolve().parent
    for path in sorted(top.rglob("*.py")):
        parts = path.relative_to(top.parent).with_suffix("").parts
        walk.whole(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    walk.data |= {p.name for p in _DATA_DIR.iterdir() if p.is_file()}
    return walk.digest()


class _CodeWalk:
    """What `code_fingerprint` counts: top-level definitions of fine modules, whole modules, data files."""

    def __init__(self, fine: tuple[str, ...], root_modules: set[str]):
        self.fine, self.root_modules = fine, root_modules
        self.pieces: dict[tuple[str, str], str] = {}
        self.modules: set[str] = set()
        self.data: set[str] = set()

    def digest(self) -> str:
        h = hashlib.sha256()
        for module, name in sorted(self.pieces):
            h.update(f"{module}:{name}\n{self.pieces[module, name]}\n".encode())
        for module in sorted(self.modules):
            h.update(f"{module}\n{_parse(module).text()}\n".encode())
        for name in sorted(self.data):
            h.update(f"data/{name}\n".encode() + (_DATA_DIR / name).read_bytes())
        return h.hexdigest()[:16]

    def is_fine(self, module: str) -> bool:
        return module in self.root_modules or any(module == p or module.startswith(p + ".") for p in self.fine)

    def reach(self, module: str, name: str) -> None:
        """Count `name` of the fine `module` and what it reads."""
        if (module, name) in self.pieces or module in self.modules:
            return
        parsed = _parse(module)
        if parsed is None:
            return
        node = parsed.top.get(name)
        if node is None:
            if name in parsed.imported:           # re-exported from another module
                self.follow(*parsed.imported[name])
            elif module in self.root_modules:     # e.g. a lambda: no top-level name to start from
                self.whole(module)
            return
        self.pieces[module, name] = parsed.text(node)
        self.data |= _data_files(node)
        for read in _names_read(node):
            if read in parsed.top:
                self.reach(module, read)
            elif read in parsed.imported:
                self.follow(*parsed.imported[read])
        for target in _imports(node, parsed.package):
            self.follow(*target)

    def follow(self, module: str, name: str | None) -> None:
        """An imported (module, name), or a module imported as a whole (name None)."""
        if module.split(".")[0] != PACKAGE:
            return
        if name is not None and _parse(f"{module}.{name}") is not None:   # `from package import module`
            module, name = f"{module}.{name}", None
        if name is not None and self.is_fine(module):
            self.reach(module, name)
        else:
            self.whole(module)

    def whole(self, module: str) -> None:
        if module in self.modules or (parsed := _parse(module)) is None:
            return
        self.modules.add(module)
        self.pieces = {k: v for k, v in self.pieces.items() if k[0] != module}
        self.data |= _data_files(parsed.tree)
        for other, name in _imports(parsed.tree, parsed.package):
            if other.split(".")[0] == PACKAGE:
                self.whole(f"{other}.{name}" if name is not None and _parse(f"{other}.{name}") else other)


@dataclass
class _Parsed:
    """One module's source: its syntax tree, its top-level definitions and imports."""

    tree: ast.Module
    top: dict[str, ast.stmt]                       # name -> the statement defining it
    imported: dict[str, tuple[str, str | None]]    # local name -> (module, name or None for a module)
    package: str                                   # what its relative imports are relative to
    _whole: str | None = None

    def text(self, node: ast.AST | None = None) -> str:
        """The code of `node` (the whole module if None) in a canonical form of its syntax tree: no comments,
        docstrings or layout, and the same text under every Python version (3.12 tokenises f-strings
        differently, so a token stream did not: the GPU's Python 3.12 and this CPU's 3.11 disagreed)."""
        if node is None:
            if self._whole is None:
                self._whole = _canonical(self.tree)
            return self._whole
        return _canonical(node)


_DOCUMENTED = (ast.Module, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)
# Fields that carry no computation: load/store contexts (implied by the position), type comments, the
# u-prefix of a string; position attributes are not fields.
_IGNORED_FIELDS = frozenset({"ctx", "type_comment", "kind"})


def _canonical(node: Any) -> str:
    """A node as `Class(field=..., ...)`, recursively: empty and None fields left out (so a field a newer
    Python adds, e.g. 3.12's `type_params`, counts only when used), a leading docstring left out."""
    if isinstance(node, list):
        return "[" + ",".join(_canonical(v) for v in node) + "]"
    if not isinstance(node, ast.AST):
        return repr(node)
    parts = []
    for name, value in ast.iter_fields(node):
        if name in _IGNORED_FIELDS or value is None or value == []:
            continue
        if name == "body" and isinstance(node, _DOCUMENTED) and _is_docstring(value[0]):
            value = value[1:]
        parts.append(f"{name}={_canonical(value)}")
    return f"{type(node).__name__}({','.join(parts)})"


def _is_docstring(stmt: ast.stmt) -> bool:
    return isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Constant) and isinstance(stmt.value.value, str)


_PARSED: dict[str, tuple[tuple, _Parsed]] = {}
_NO_SOURCE: set[str] = set()


def _parse(module: str) -> _Parsed | None:
    """The parsed source of `module` (None if it has no Python source), re-read when its file changes."""
    if module in _NO_SOURCE:
        return None
    path = _package_file(module) or getattr(sys.modules.get(module), "__file__", None)
    if path is None:
        try:
            spec = importlib.util.find_spec(module)
        except (ImportError, ValueError, AttributeError):
            spec = None
        path = spec.origin if spec is not None and spec.has_location else None
    if path is None or not str(path).endswith(".py") or not os.path.isfile(path):
        _NO_SOURCE.add(module)
        return None
    st = os.stat(path)
    key = (path, st.st_mtime_ns, st.st_size)
    if module in _PARSED and _PARSED[module][0] == key:
        return _PARSED[module][1]
    source = Path(path).read_text(encoding="utf-8")
    tree = ast.parse(source)
    package = module if Path(path).name == "__init__.py" else module.rpartition(".")[0]
    top: dict[str, ast.stmt] = {}
    imported: dict[str, tuple[str, str | None]] = {}
    for stmt in tree.body:
        if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            top[stmt.name] = stmt
        elif isinstance(stmt, (ast.Assign, ast.AnnAssign, ast.AugAssign)):
            for target in (stmt.targets if isinstance(stmt, ast.Assign) else [stmt.target]):
                top.update({n.id: stmt for n in ast.walk(target) if isinstance(n, ast.Name) and n.id not in top})
        elif isinstance(stmt, ast.Import):
            imported.update({a.asname or a.name.split(".")[0]: (a.name, None) for a in stmt.names})
        elif isinstance(stmt, ast.ImportFrom):
            imported.update({a.asname or a.name: (_absolute(stmt, package), a.name) for a in stmt.names})
    parsed = _Parsed(tree, top, imported, package)
    _PARSED[module] = (key, parsed)
    return parsed


def _package_file(module: str) -> str | None:
    """The source file of a module of this package, found on disk without importing anything (a module
    whose imports fail in this environment is still counted)."""
    if module != PACKAGE and not module.startswith(PACKAGE + "."):
        return None
    base = Path(__file__).resolve().parent.parent.joinpath(*module.split("."))
    for path in (base.with_suffix(".py"), base / "__init__.py"):
        if path.is_file():
            return str(path)
    return None


def _absolute(stmt: ast.ImportFrom, package: str) -> str:
    """The module a `from ... import` names, relative imports resolved against `package`."""
    if not stmt.level:
        return stmt.module or ""
    return importlib.util.resolve_name("." * stmt.level + (stmt.module or ""), package)


def _imports(node: ast.AST, package: str) -> list[tuple[str, str | None]]:
    """(module, name) of every `from module import name`, (module, None) of every `import module`, in `node`."""
    out: list[tuple[str, str | None]] = []
    for n in ast.walk(node):
        if isinstance(n, ast.Import):
            out += [(a.name, None) for a in n.names]
        elif isinstance(n, ast.ImportFrom):
            out += [(_absolute(n, package), a.name) for a in n.names]
    return out


def _names_read(node: ast.AST) -> set[str]:
    """Every name `node` mentions (a quoted annotation too)."""
    names = set()
    for n in ast.walk(node):
        if isinstance(n, ast.Name):
            names.add(n.id)
        elif isinstance(n, ast.Constant) and isinstance(n.value, str) and n.value.isidentifier():
            names.add(n.value)
    return names


@functools.cache
def _data_names() -> frozenset[str]:
    return frozenset(p.name for p in _DATA_DIR.iterdir() if p.is_file())


def _data_files(node: ast.AST) -> set[str]:
    """The package's data files that `node` names in a string (e.g. "associations.json")."""
    names = _data_names()
    return {n.value for n in ast.walk(node) if isinstance(n, ast.Constant) and isinstance(n.value, str)
            and n.value in names}
