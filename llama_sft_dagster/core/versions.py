"""Content hashes and versions, in one place (Dagster-free).

- Data versions: `file_version`, `table_version` (the Arrow content of a Parquet file, independent of
  file metadata), `folder_version` (relative names and bytes of a model/tokenizer folder).
- Model folders: `model_folder_version` (the version `base_model` stamped beside the folder, while no file
  changed; else the content hash), `stamp_version`.
- Fingerprints of settings: `fingerprint(*mappings)` (a training run's identity for resuming).
- Code versions: `code_version(*functions, configs=...)` hashes the source of the functions an asset
  runs, and of every project function, class and constant they reach, plus the defaults of its config
  classes. Editing a stage's logic therefore marks that stage stale (and nothing upstream) without
  anyone remembering to bump a string. The source is compared as a syntax tree without docstrings, so a
  comment-only or docstring-only edit changes nothing.
"""

from __future__ import annotations

import ast
import hashlib
import inspect
import json
import re
import textwrap
from collections.abc import Callable, Iterable, Mapping
from functools import lru_cache
from pathlib import Path

from llama_sft_dagster.core import source_index

PACKAGE = "llama_sft_dagster"
CHUNK = 1 << 20


def _hexdigest(h) -> str:
    return h.hexdigest()[:16]


def fingerprint(*parts: Mapping) -> str:
    """Stable hash of JSON-able settings (key order does not matter)."""
    return _hexdigest(hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()))


def file_version(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(CHUNK), b""):
            h.update(chunk)
    return _hexdigest(h)


def folder_version(path: Path, patterns: tuple[str, ...] = ("*",)) -> str:
    """Content version of a folder (model weights, tokenizer): hash of relative names and bytes."""
    h = hashlib.sha256()
    path = Path(path)
    for f in sorted({p for pat in patterns for p in path.rglob(pat) if p.is_file()}):
        h.update(str(f.relative_to(path)).encode())
        with open(f, "rb") as fh:
            for chunk in iter(lambda: fh.read(CHUNK), b""):
                h.update(chunk)
    return _hexdigest(h)


def table_version(path: Path) -> str:
    """Content version of a Parquet file: a hash of its Arrow data, independent of file metadata.

    Re-running a stage on identical inputs yields identical rows, hence the same version, so nothing
    downstream goes stale.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    h = hashlib.sha256()
    pf = pq.ParquetFile(path)
    h.update(pf.schema_arrow.to_string(show_schema_metadata=False).encode())
    for batch in pf.iter_batches(batch_size=65536):
        sink = pa.BufferOutputStream()
        with pa.ipc.new_stream(sink, batch.schema) as w:
            w.write_batch(batch)
        h.update(sink.getvalue().to_pybytes())
    return _hexdigest(h)


# ---- the version of a model folder without re-reading its weights ------------------------------------
# `base_model` knows its version when it builds or downloads the folder (the hub commit sha, or the content
# hash of the demo model) and records it beside the folder with each file's size and mtime.
# `model_folder_version` returns that record while every file still matches it (a `stat` per file), and falls
# back to hashing the content (then records the new version) when a file was added, removed or rewritten.
# Hashing an 8B model's 16 GB on every `train_adapter` run is what this avoids.

STAMP_SUFFIX = ".version.json"


def stamp_path(folder: Path) -> Path:
    folder = Path(folder)
    return folder.with_name(folder.name + STAMP_SUFFIX)  # beside the folder: not part of its content


def file_stats(folder: Path) -> dict[str, list[int]]:
    folder = Path(folder)
    return {
        str(p.relative_to(folder)): [p.stat().st_size, p.stat().st_mtime_ns]
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def stamp_version(folder: Path, version: str) -> str:
    from llama_sft_dagster.core.data.storage import atomic_path  # pyarrow: only where a stamp is written

    with atomic_path(stamp_path(folder)) as tmp:
        tmp.write_text(json.dumps({"version": version, "files": file_stats(folder)}, indent=1))
    return version


def model_folder_version(folder: Path) -> str:
    """The recorded version of `folder` if no file changed since it was recorded, else its content hash."""
    stamp = stamp_path(folder)
    if stamp.exists():
        try:
            record = json.loads(stamp.read_text())
        except (OSError, ValueError):
            record = {}
        if record.get("version") and record.get("files") == file_stats(folder):
            return record["version"]
    return stamp_version(folder, folder_version(folder))


# ---- code versions -------------------------------------------------------------------------------

_CONSTANT_TYPES = (int, float, str, bytes, bool, tuple, frozenset)


def _tree(obj) -> ast.AST | None:
    try:
        return ast.parse(textwrap.dedent(inspect.getsource(obj)))
    except (OSError, TypeError, SyntaxError):
        return None


def _normalise(tree: ast.AST) -> ast.AST:
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            node.decorator_list = []  # asset decorators carry descriptions and deps, not logic
            body = node.body
            if (
                body
                and isinstance(body[0], ast.Expr)
                and isinstance(getattr(body[0], "value", None), ast.Constant)
                and isinstance(body[0].value.value, str)
            ):
                node.body = body[1:] or [ast.Pass()]
    return tree


def _references(module: str, tree: ast.AST) -> Iterable[tuple[str, object]]:
    """(name as written, what it resolves to) for the module-level names `tree` uses, read from the source of
    `module` and of the project modules it imports (also inside function bodies), none of them executed."""
    local: dict[str, tuple] = {}
    for node in ast.walk(tree):  # imports inside function bodies (heavy libraries are imported late)
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith(PACKAGE) and not node.level:
            for alias in node.names:
                local[alias.asname or alias.name] = ("from", node.module, alias.name)
    names = {**source_index.bindings(module), **local}
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and node.id in names:
            yield node.id, source_index.resolve_binding(module, names[node.id])
        elif isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in names:
            owner = source_index.resolve_binding(module, names[node.value.id])
            if isinstance(owner, source_index.Module):
                ref = source_index.resolve_attribute(owner, node.attr)
                if ref is not None:
                    yield f"{node.value.id}.{node.attr}", ref


@lru_cache(maxsize=1024)
def _definition_dump(definition: source_index.Definition) -> tuple[str, ast.AST]:
    """(normalised dump, normalised tree) of a definition read from its file: one per parsed source text.
    What its names refer to is resolved on every walk, since that depends on other files."""
    tree = _normalise(definition.tree())
    return ast.dump(tree, annotate_fields=False, include_attributes=False), tree


def _stable_repr(value) -> str:
    """repr without memory addresses: a constant that holds functions or classes (e.g. the DATA_STAGES table)
    reprs as `<function f at 0x7f..>`, which differs in every process and would make the version unstable."""
    return re.sub(r" at 0x[0-9a-fA-F]+", "", repr(value))


def code_sources(*objects: Callable) -> dict[str, str]:
    """Normalised source of `objects` and of every project function/class/constant they reach.

    The objects reached are found in the project's source files (core/source_index.py), not imported, so
    computing a code version never executes a module (loading the definitions stays free of torch)."""
    seen: dict[str, str] = {}
    stack: list = list(objects)
    while stack:
        obj = stack.pop()
        if isinstance(obj, source_index.Definition):
            key, module = f"{obj.module}.{obj.qualname}", obj.module
        else:
            key, module = f"{obj.__module__}.{obj.__qualname__}", obj.__module__
        if key in seen:
            continue
        if isinstance(obj, source_index.Definition):
            seen[key], tree = _definition_dump(obj)
        elif (tree := _tree(obj)) is None:
            seen[key] = _stable_repr(obj)
            continue
        else:
            seen[key] = ast.dump(_normalise(tree), annotate_fields=False, include_attributes=False)
        for name, ref in _references(module, tree):
            if isinstance(ref, source_index.Definition):
                stack.append(ref)
            elif isinstance(ref, source_index.Constant) and isinstance(ref.value, _CONSTANT_TYPES):
                seen.setdefault(f"{module}:{name}", _stable_repr(ref.value))
    return seen


def code_version(*objects: Callable, configs: Iterable[type] = ()) -> str:
    """Code version of an asset: its logic's normalised source plus its config classes' defaults."""
    h = hashlib.sha256()
    for key, source in sorted(code_sources(*objects).items()):
        h.update(f"{key}\n{source}\n".encode())
    for config in configs:
        defaults = json.dumps(config().model_dump(), sort_keys=True, default=str)
        h.update(f"{config.__name__}={defaults}\n".encode())
    return "c" + h.hexdigest()[:12]
