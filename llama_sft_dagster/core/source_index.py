"""The project's own source, read as syntax trees without executing it (for code versions: core/versions.py).

A code version must follow every function an asset reaches, including those it imports inside its body
(torch, transformers and peft are imported late so that the definitions load fast). Importing those
modules to read their functions would execute them, and with them transformers; so a module's names
are resolved from its file's syntax tree: its top-level defs, classes, literal constants and imports.

    resolve("llama_sft_dagster.core.training.masking", "IGNORE_INDEX")  # -> Constant(-100)
"""

from __future__ import annotations

import ast
import importlib
import operator
import sys
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

PACKAGE = "llama_sft_dagster"
PACKAGE_DIR = Path(__file__).resolve().parents[1]
# Decorators that turn a function into something else (a cache wrapper, a Dagster definition): the
# function itself is then not followed, as when the walk looked at the imported objects.
REPLACING_DECORATORS = frozenset({"lru_cache", "cache", "cached_property"})
SETTINGS_PACKAGES = ("dagster", "pydantic")  # where the bases of settings classes (dg.Config, resources) live


@dataclass(frozen=True)
class Definition:
    """A project function or class as written in its module."""

    module: str
    qualname: str
    node: ast.AST
    source: str = field(compare=False, repr=False)  # the module's text

    def tree(self) -> ast.Module:
        """A fresh tree of the definition alone, as `ast.parse(inspect.getsource(obj))` gives it (parsing its
        lines again is several times faster than copying the node)."""
        start = min([d.lineno for d in self.node.decorator_list] + [self.node.lineno])
        return ast.parse("".join(self.source.splitlines(keepends=True)[start - 1 : self.node.end_lineno]))


@dataclass(frozen=True)
class Constant:
    value: object


@dataclass(frozen=True)
class Module:
    name: str


@dataclass(frozen=True)
class External:
    """A name from outside the project (module, attribute or None for the module itself); never imported."""

    module: str
    attr: str | None = None


def module_path(name: str) -> Path | None:
    """The file of project module `name` (a package's __init__.py), found without importing anything."""
    if name != PACKAGE and not name.startswith(PACKAGE + "."):
        return None
    base = PACKAGE_DIR.joinpath(*name.split(".")[1:])
    for path in (base.with_suffix(".py"), base / "__init__.py"):
        if path.is_file():
            return path
    return None


@lru_cache(maxsize=256)
def _parse(path: Path, source: str) -> ast.Module:
    return ast.parse(source, filename=str(path))


def module_source(name: str) -> tuple[str, ast.Module] | None:
    path = module_path(name)
    if path is None:
        return None
    text = path.read_text()
    return text, _parse(path, text)


def _top_level(body: list[ast.stmt]):
    """Statements that bind module names, including those under a top-level if/try/with."""
    for node in body:
        if isinstance(node, (ast.If, ast.Try, ast.With)):
            for part in (
                node.body,
                getattr(node, "orelse", []),
                getattr(node, "finalbody", []),
                *(h.body for h in getattr(node, "handlers", [])),
            ):
                yield from _top_level(part)
        else:
            yield node


def absolute(module: str, node: ast.ImportFrom) -> str:
    """The absolute module of a `from ... import` in `module` (relative imports resolved)."""
    if not node.level:
        return node.module or ""
    is_package = module_path(module) is not None and module_path(module).name == "__init__.py"
    parts = module.split(".")[: len(module.split(".")) - node.level + (1 if is_package else 0)]
    return ".".join(parts + ([node.module] if node.module else []))


def bindings(module: str) -> dict[str, tuple]:
    """Module-level names of project module `module`: name -> ("def", node, text) | ("value", expr, name) |
    ("module", name) | ("from", module, attr). Later bindings win, as at the end of an import."""
    found = module_source(module)
    return {} if found is None else _bindings(module, *found)


@lru_cache(maxsize=256)
def _bindings(module: str, text: str, tree: ast.Module) -> dict[str, tuple]:
    names: dict[str, tuple] = {"__name__": ("const", module), "__doc__": ("const", ast.get_docstring(tree, False))}
    for node in _top_level(tree.body):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names[node.name] = ("def", node, text)
        elif isinstance(node, ast.Assign):
            for target in node.targets:
                if isinstance(target, ast.Name):
                    names[target.id] = ("value", node.value, target.id)
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and node.value is not None:
            names[node.target.id] = ("value", node.value, node.target.id)
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.asname:
                    names[alias.asname] = ("module", alias.name)
                else:
                    names[alias.name.split(".")[0]] = ("module", alias.name.split(".")[0])
        elif isinstance(node, ast.ImportFrom):
            source = absolute(module, node)
            for alias in node.names:
                if alias.name != "*":
                    names[alias.asname or alias.name] = ("from", source, alias.name)
    return names


def _module_or_external(name: str):
    return Module(name) if module_path(name) is not None else External(name)


def resolve_binding(module: str, binding: tuple | None, _seen: frozenset = frozenset()):
    """What a binding of `module` refers to: Definition, Constant, Module, External or None (not followed)."""
    if binding is None:
        return None
    kind = binding[0]
    if kind == "const":
        return Constant(binding[1])
    if kind == "module":
        return _module_or_external(binding[1])
    if kind == "from":
        source, attr = binding[1], binding[2]
        if module_path(source) is None:
            return External(source, attr)
        if module_path(f"{source}.{attr}") is not None and attr not in bindings(source):
            return Module(f"{source}.{attr}")
        return resolve(source, attr, _seen)
    if kind == "def":
        return _definition(module, binding[1], binding[2])
    return _value(module, binding[1], binding[2], _seen)


def resolve(module: str, name: str, _seen: frozenset = frozenset()):
    """The object `name` stands for at the top level of project module `module`, from its source only."""
    if (module, name) in _seen:
        return None
    return resolve_binding(module, bindings(module).get(name), _seen | {(module, name)})


def resolve_attribute(target, attr: str):
    """`target.attr` for a resolved project module (None for anything else)."""
    if not isinstance(target, Module):
        return None
    if attr in bindings(target.name):
        return resolve(target.name, attr)
    return Module(f"{target.name}.{attr}") if module_path(f"{target.name}.{attr}") else None


def _decorator_name(node: ast.expr) -> str:
    node = node.func if isinstance(node, ast.Call) else node
    return node.attr if isinstance(node, ast.Attribute) else getattr(node, "id", "")


def _replaces_function(module: str, decorator: ast.expr) -> bool:
    """True when a decorator returns something other than the function: a cache wrapper, or a Dagster
    definition (built by dagster itself or by a project decorator such as `versioned_asset`)."""
    if _decorator_name(decorator) in REPLACING_DECORATORS:
        return True
    target = decorator.func if isinstance(decorator, ast.Call) else decorator
    ref = expression(module, target)
    return isinstance(ref, Definition) or (isinstance(ref, External) and ref.module.split(".")[0] == "dagster")


def _definition(module: str, node: ast.AST, text: str):
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
        if any(_replaces_function(module, d) for d in node.decorator_list):
            return None
    elif is_settings_class(module, node):
        return None  # pydantic models (dg.Config, resources) count by their config defaults, not their code
    return Definition(module, node.name, node, text)


def is_settings_class(module: str, node: ast.ClassDef, _depth: int = 0) -> bool:
    """Whether a class is a pydantic model: a project base recursively, or a dagster/pydantic base with
    `model_fields` (those two are imported to tell; the training libraries never are)."""
    for base in node.bases:
        ref = expression(module, base)
        if isinstance(ref, Definition) and isinstance(ref.node, ast.ClassDef) and _depth < 20:
            if is_settings_class(ref.module, ref.node, _depth + 1):
                return True
        elif isinstance(ref, External) and ref.attr and ref.module.split(".")[0] in SETTINGS_PACKAGES:
            if hasattr(getattr(importlib.import_module(ref.module), ref.attr, None), "model_fields"):
                return True
    return False


def expression(module: str, node: ast.expr):
    """A name or dotted name in `module` resolved (`dg.Config` -> External("dagster", "Config"))."""
    if isinstance(node, ast.Name):
        return resolve(module, node.id)
    if isinstance(node, ast.Attribute):
        owner = expression(module, node.value)
        if isinstance(owner, External) and owner.attr is None:
            return External(owner.module, node.attr)
        return resolve_attribute(owner, node.attr)
    return None


_OPERATORS = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
    ast.Pow: operator.pow,
    ast.LShift: operator.lshift,
    ast.RShift: operator.rshift,
    ast.BitOr: operator.or_,
    ast.BitAnd: operator.and_,
    ast.USub: operator.neg,
    ast.UAdd: operator.pos,
}


class _NotConstant(Exception):
    pass


def _evaluate(module: str, node: ast.expr, seen: frozenset):
    """The value of a constant expression: literals, arithmetic on them, and names of other constants."""
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, ast.Tuple):
        return tuple(_evaluate(module, e, seen) for e in node.elts)
    if isinstance(node, ast.BinOp) and type(node.op) in _OPERATORS:
        return _OPERATORS[type(node.op)](_evaluate(module, node.left, seen), _evaluate(module, node.right, seen))
    if isinstance(node, ast.UnaryOp) and type(node.op) in _OPERATORS:
        return _OPERATORS[type(node.op)](_evaluate(module, node.operand, seen))
    if isinstance(node, (ast.Name, ast.Attribute)):
        ref = resolve(module, node.id, seen) if isinstance(node, ast.Name) else expression(module, node)
        if isinstance(ref, Constant):
            return ref.value
    raise _NotConstant


def _value(module: str, node: ast.expr, name: str, seen: frozenset):
    if isinstance(node, ast.Name):  # an alias (`f = g`) stands for what it names
        return resolve(module, node.id, seen)
    try:
        return Constant(_evaluate(module, node, seen))
    except (_NotConstant, TypeError, ValueError, ArithmeticError):
        pass
    # A computed value (`LAST_STAGE = DATA_STAGES[-1].name`) is known only by running its module: it is read
    # when the module is already imported (the asset modules and what they import at the top, hence always
    # at definitions load); a module reached only through a function-local import is never imported here.
    loaded = sys.modules.get(module)
    return Constant(vars(loaded)[name]) if loaded is not None and name in vars(loaded) else None
