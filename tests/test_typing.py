"""Type hints on every public name (#18 item 4).

Every name in ``__all__`` of :mod:`anatcl_sklearn` and of its public sub-packages is fully
annotated:

- a function: every parameter (``*args`` and ``**kwargs`` included) and the return;
- a class: its ``__init__``'s parameters and every public method (name not starting with
  ``_``; static, class methods and property getters included) that this package defines.
  Methods inherited from scikit-learn, torch, skorch... are not ours to annotate.

Constants (``OPENBHB_SHAPE``, ``TASKS``...) are exempt. ``self`` and ``cls`` need no annotation.
The check reads the signatures (``inspect``), it does not evaluate the annotations: whether
they are right is the type checker's job (``mypy anatcl_sklearn``, which ``.ci/run`` runs).
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
from collections.abc import Callable
from pathlib import Path
from types import FunctionType, ModuleType
from typing import Any

import anatcl_sklearn

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = anatcl_sklearn.__name__

# The public sub-packages the API reference documents (docs/_ext/anatcl_docs.py SUBPACKAGES;
# duplicated here because that module imports sphinx). Any other module or package of
# anatcl_sklearn whose dotted name has no part starting with "_" (cli, embedder, a future
# brainage...) is found by `public_modules` and checked too, without editing this list.
DOCUMENTED_SUBPACKAGES = (
    "anatcl_sklearn.images",
    "anatcl_sklearn.models",
    "anatcl_sklearn.losses",
    "anatcl_sklearn.anatomy",
    "anatcl_sklearn.datasets",
    "anatcl_sklearn.evaluation",
    "anatcl_sklearn.distributed",
    "anatcl_sklearn.exceptions",
)

def public_modules() -> list[str]:
    """anatcl_sklearn, the documented sub-packages, and every public module found below it."""
    names = {PACKAGE, *DOCUMENTED_SUBPACKAGES}

    def visit(package: ModuleType) -> None:
        for info in pkgutil.iter_modules(package.__path__, package.__name__ + "."):
            if info.name.rsplit(".", 1)[1].startswith("_"):
                continue
            names.add(info.name)
            if info.ispkg:
                visit(importlib.import_module(info.name))

    visit(anatcl_sklearn)
    return sorted(names)


def _ours(obj: object) -> bool:
    module = getattr(obj, "__module__", None) or ""
    return module == PACKAGE or module.startswith(PACKAGE + ".")


def _qualname(func: object) -> str:
    return f"{getattr(func, '__module__', '?')}.{getattr(func, '__qualname__', repr(func))}"


def _unannotated(func: Callable[..., Any], *, is_init: bool = False) -> list[str]:
    """The parameters (and ``return``) of ``func`` that carry no annotation."""
    try:
        signature = inspect.signature(func, follow_wrapped=True)
    except (TypeError, ValueError):  # a builtin without a signature: nothing to read
        return []
    missing = [
        name
        for name, parameter in signature.parameters.items()
        if name not in ("self", "cls") and parameter.annotation is inspect.Parameter.empty
    ]
    if not is_init and signature.return_annotation is inspect.Signature.empty:
        missing.append("return")
    return missing


def _defining_class(cls: type, name: str) -> type | None:
    for klass in cls.__mro__:
        if name in vars(klass):
            return klass
    return None


def _class_methods(cls: type) -> list[tuple[Callable[..., Any], bool]]:
    """``(function, is_init)``: the methods of ``cls`` that this package defines and the rule
    covers."""
    found: list[tuple[Callable[..., Any], bool]] = []
    for name in ["__init__", *sorted(n for n in dir(cls) if not n.startswith("_"))]:
        owner = _defining_class(cls, name)
        if owner is None or not _ours(owner):
            continue  # inherited from scikit-learn, torch, skorch, the standard library...
        raw = vars(owner)[name]
        if isinstance(raw, (staticmethod, classmethod)):
            raw = raw.__func__
        elif isinstance(raw, property):
            raw = raw.fget
        if isinstance(raw, FunctionType) and _ours(raw):
            found.append((raw, name == "__init__"))
    return found


def unannotated_public_names() -> dict[str, list[str]]:
    """Qualified name -> its missing annotations, over every public module's ``__all__``."""
    problems: dict[str, list[str]] = {}
    for modname in public_modules():
        module = importlib.import_module(modname)
        exported = getattr(module, "__all__", None)
        if exported is None:  # no __all__: the public names the module itself defines
            exported = [n for n in vars(module) if not n.startswith("_")
                        and getattr(getattr(module, n), "__module__", None) == modname]
        for name in exported:
            obj = getattr(module, name)
            if not _ours(obj):
                continue
            if inspect.isclass(obj):
                members = _class_methods(obj)
            elif callable(obj):
                members = [(obj, False)]
            else:
                continue  # a constant
            for func, is_init in members:
                missing = _unannotated(func, is_init=is_init)
                if missing:
                    problems[_qualname(func)] = missing
    return problems


def test_public_modules_are_found():
    modules = public_modules()
    assert set(DOCUMENTED_SUBPACKAGES) <= set(modules)
    assert {"anatcl_sklearn.cli", "anatcl_sklearn.embedder"} <= set(modules)
    assert not any(part.startswith("_") for m in modules for part in m.split(".")[1:])


def test_every_public_name_is_annotated():
    problems = unannotated_public_names()
    assert not problems, "unannotated public names (qualified name: missing annotations):\n" + (
        "\n".join(f"  {name}: {', '.join(missing)}" for name, missing in sorted(problems.items())))


def test_the_check_catches_what_it_should():
    """The checker itself: parameters, *args, **kwargs, the return; self/cls exempt; __init__'s
    return optional; methods of a class from elsewhere (here dict's) not ours to check."""

    def bare(a, *args, b: int, **kwargs) -> None: ...

    def full(a: int, *args: str, **kwargs: float) -> int:
        return a

    assert _unannotated(bare) == ["a", "args", "kwargs"]
    assert _unannotated(full) == []

    class Thing(dict):
        def __init__(self, x: int): ...

        def method(self, y): ...

        @classmethod
        def build(cls) -> Thing:
            return cls(0)

        @staticmethod
        def helper(z): ...

        @property
        def size(self): ...

        def _private(self, w): ...

    Thing.__module__ = PACKAGE + "._example"
    for raw in vars(Thing).values():
        func = getattr(raw, "__func__", None) or getattr(raw, "fget", None) or raw
        if isinstance(func, FunctionType):
            func.__module__ = Thing.__module__
    checked = {f.__name__: _unannotated(f, is_init=i) for f, i in _class_methods(Thing)}
    assert checked == {"__init__": [], "build": [], "helper": ["z", "return"],
                       "method": ["y", "return"], "size": ["return"]}


def test_py_typed_marker_ships():
    assert (Path(anatcl_sklearn.__file__).parent / "py.typed").is_file()
