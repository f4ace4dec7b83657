"""Sphinx helpers of the anatcl-sklearn documentation.

- :func:`write_api_pages` writes one reference page per public module from its ``__all__``
  (so a name added to ``__all__`` is documented without touching ``docs/``), each public
  object documented once, under the module that exports it most specifically;
- a ``missing-reference`` handler resolves a reference to a re-exported name
  (``anatcl_sklearn.conform_image``) to the page of its documented name
  (``anatcl_sklearn.images.conform_image``), and leaves references to other projects
  (numpy, torch, scikit-learn...) as plain text when no intersphinx inventory links them.
  Any other unresolved reference stays a warning (``nitpicky``), so ``-W`` fails on it;
- :func:`template_context` gives the autosummary templates (``_templates/``) each documented
  object's other names, which sphinx-gallery's "Examples using" may know it by
  (:func:`backreference_names`), and each class's methods for its method table
  (:func:`class_members`);
- :func:`lead_gallery_with_thumbnails` moves the gallery header's text (examples/README.rst)
  below the thumbnails of the gallery's index page.
"""

import builtins
import importlib
import inspect
import re
import shutil
import sys
from collections.abc import Mapping
from pathlib import Path

from sphinx.pycode import ModuleAnalyzer, PycodeError

# The public modules, sub-packages first: an object exported by a sub-package and the
# top level is documented in the sub-package (its more specific home).
SUBPACKAGES = (
    "anatcl_sklearn.images",
    "anatcl_sklearn.models",
    "anatcl_sklearn.losses",
    "anatcl_sklearn.anatomy",
    "anatcl_sklearn.datasets",
    "anatcl_sklearn.evaluation",
    "anatcl_sklearn.brainage",
    "anatcl_sklearn.distributed",
    "anatcl_sklearn.exceptions",
)
PUBLIC_MODULES = ("anatcl_sklearn", *SUBPACKAGES)

# Projects whose names docstrings mention; linked by intersphinx when it is on, plain text
# otherwise. The standard library counts too.
EXTERNAL_ROOTS = {
    "numpy", "np", "scipy", "sklearn", "torch", "nibabel", "nib", "skorch", "pandas", "pd",
    "joblib", "matplotlib", "threadpoolctl", "safetensors", "huggingface_hub", "nilearn",
    "array-like", "array_like", "ndarray", "DataFrame", "Series", "Bunch", "callable",
    "path-like", "file-like", "PathLike", "None", "True", "False", "mapping", "sequence",
} | set(sys.stdlib_module_names) | {name for name in dir(builtins) if not name.startswith("_")}

# Labels of scikit-learn's user guide that inherited scikit-learn docstrings refer to.
EXTERNAL_LABELS = {"metadata_routing", "metadata_routing_models", "set_output",
                   "df_output_transform", "sphx_glr_auto_examples_miscellaneous_plot_set_output.py"}

_CLASS, _FUNCTION, _DATA = "Classes", "Functions", "Constants"
# A constant whose repr is longer than this is shown without its value.
_SHORT_REPR = 100

_OWNERS = {}  # (name, id(object)) -> documented full name


def _public_names(module):
    return [name for name in module.__all__ if name != "__version__"]


def _kind(obj):
    if inspect.isclass(obj):
        return _CLASS
    if callable(obj):
        return _FUNCTION
    return _DATA


def documented_names():
    """``{(name, id(object)): full name}``: where each public object is documented."""
    if not _OWNERS:
        for modname in (*SUBPACKAGES, "anatcl_sklearn"):
            module = importlib.import_module(modname)
            for name in _public_names(module):
                _OWNERS.setdefault((name, id(getattr(module, name))), f"{modname}.{name}")
    return _OWNERS


def _all_modules():
    """Every module of the package, public and private, by name (each imported, so the answer
    does not depend on what happened to be imported before; ``__main__`` modules excluded)."""
    import pkgutil

    import anatcl_sklearn

    modules = {"anatcl_sklearn": anatcl_sklearn}
    for info in pkgutil.walk_packages(anatcl_sklearn.__path__, "anatcl_sklearn."):
        if not info.name.endswith("__main__"):
            modules[info.name] = importlib.import_module(info.name)
    return modules


def backreference_names(full_name):
    """Every dotted name of the object documented as ``full_name``, that one first.

    sphinx-gallery records an example's use of an object under one name: the shortest module
    path that holds the same object (``anatcl_sklearn.conform_image`` for a
    ``from anatcl_sklearn.images import conform_image``) or, with ``prefer_full_module``, the
    path the example imported it from; for a class, also the module that defines it
    (``anatcl_sklearn.embedder._embedder``). The page documents it under one name
    (``anatcl_sklearn.images.conform_image``), so its "Examples using" lists the examples
    recorded under any of these names.
    """
    modname, name = full_name.rsplit(".", 1)
    obj = getattr(importlib.import_module(modname), name)
    names = [full_name]
    for other, module in sorted(_all_modules().items()):
        if getattr(module, name, None) is obj and f"{other}.{name}" not in names:
            names.append(f"{other}.{name}")
    return names


# Base classes whose public methods a class page leaves out: torch's Module has some fifty
# (``cuda``, ``eval``, ``register_buffer``...), documented by torch; an exception's
# ``add_note`` and ``with_traceback`` are Python's.
_FOREIGN_METHOD_ROOTS = ("builtins", "torch")


def class_members(cls):
    """``(members, methods)`` of a class page, in alphabetical order.

    ``members``: the public attributes the page documents (what ``:members:`` would, plus the
    methods inherited from scikit-learn: ``fit_transform``, ``get_params``...); ``methods``:
    those that are methods, for the page's table of methods.
    """
    members, methods = [], []
    for name in sorted(dir(cls)):
        if name.startswith("_"):
            continue
        owner = next((base for base in cls.__mro__ if name in vars(base)), None)
        if owner is None or owner.__module__.split(".")[0] in _FOREIGN_METHOD_ROOTS:
            continue
        attribute = inspect.getattr_static(owner, name)
        if isinstance(attribute, (staticmethod, classmethod)):
            attribute = attribute.__func__
        is_method = inspect.isfunction(attribute) or (
            callable(getattr(cls, name, None)) and not isinstance(attribute, property)
            and not inspect.isclass(attribute))
        if owner is not cls and not is_method:
            continue  # an inherited attribute or property: documented by its class
        members.append(name)
        if is_method:
            methods.append(name)
    return members, methods


def template_context():
    """Variables of the autosummary templates (``autosummary_context``)."""
    backrefs, members, methods = {}, {}, {}
    for full_name in sorted(set(documented_names().values())):
        backrefs[full_name] = backreference_names(full_name)
        modname, name = full_name.rsplit(".", 1)
        obj = getattr(importlib.import_module(modname), name)
        if inspect.isclass(obj):
            members[full_name], methods[full_name] = class_members(obj)
    return {"anatcl_backrefs": backrefs, "anatcl_members": members,
            "anatcl_methods": methods}


def _autosummary(names, template=None, toctree=True):
    lines = [".. autosummary::"]
    if toctree:
        lines.append("   :toctree: generated/")
    if template:
        lines.append(f"   :template: {template}")
    lines += ["   :nosignatures:", ""] + [f"   {name}" for name in names] + [""]
    return lines


def write_api_pages(folder):
    """Write ``folder/index.rst`` and one page per public module (the folder is replaced)."""
    folder = Path(folder)
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    owners = documented_names()
    index = [
        ".. _api:",
        "",
        "API reference",
        "=============",
        "",
        "Every name exported by ``anatcl_sklearn`` and its public sub-packages (their",
        "``__all__``), with its one-line summary. A name exported twice",
        "(``anatcl_sklearn.conform_image`` is ``anatcl_sklearn.images.conform_image``) is",
        "documented once, in its sub-package, and listed in both.",
        "",
        ".. toctree::",
        "   :hidden:",
        "   :maxdepth: 1",
        "",
    ]
    tables = []
    for modname in PUBLIC_MODULES:
        module = importlib.import_module(modname)
        here, elsewhere = {_CLASS: [], _FUNCTION: [], _DATA: []}, []
        for name in _public_names(module):
            obj = getattr(module, name)
            if owners[(name, id(obj))] == f"{modname}.{name}":
                here[_kind(obj)].append(name)
            else:
                elsewhere.append(name)
        title = f":mod:`{modname}`"
        lines = [
            title,
            "=" * len(title),
            "",
            f".. automodule:: {modname}",
            "   :no-members:",
            "",
            f".. currentmodule:: {modname}",
            "",
        ]
        for kind, names in here.items():
            if not names:
                continue
            lines += [kind, "-" * len(kind), ""]
            if kind == _CLASS:
                lines += _autosummary(names, "class.rst")
            elif kind == _FUNCTION:
                lines += _autosummary(names, "function.rst")
            else:
                short = [n for n in names if len(repr(getattr(module, n))) <= _SHORT_REPR]
                long = [n for n in names if n not in short]
                if short:
                    lines += _autosummary(short, "data.rst")
                if long:
                    lines += _autosummary(long, "data_novalue.rst")
        if elsewhere:
            heading = "Also exported here"
            lines += [heading, "-" * len(heading), "",
                      "Documented in the sub-package they come from.", ""]
            lines += _autosummary(elsewhere, toctree=False)
        (folder / f"{modname}.rst").write_text("\n".join(lines))
        index.append(f"   {modname}")
        # The index: each module's summary line and a table of every name it exports, each
        # with its summary, linked to its page (the module's own page holds the toctree).
        doc = inspect.getdoc(module) or ""
        tables += [f":mod:`{modname}`", "-" * len(f":mod:`{modname}`"), "",
                   f".. currentmodule:: {modname}", "", doc.split("\n\n")[0], ""]
        tables += _autosummary(_public_names(module), toctree=False)
    (folder / "index.rst").write_text("\n".join([*index, "", *tables]) + "\n")


def _lookup(path):
    """``(object, name, rest)`` for the longest importable public prefix of a dotted path."""
    parts = path.split(".")
    for cut in range(len(parts), 1, -1):
        modname, name = ".".join(parts[: cut - 1]), parts[cut - 1]
        if not modname.startswith("anatcl_sklearn"):
            return None
        try:
            module = importlib.import_module(modname)
        except ImportError:
            continue
        if hasattr(module, name):
            return getattr(module, name), name, parts[cut:]
    return None


def _missing_reference(app, env, node, contnode):
    domain = node.get("refdomain")
    target = node.get("reftarget", "")
    if domain == "std" and node.get("reftype") == "ref" and target in EXTERNAL_LABELS:
        return contnode
    if domain == "std" and node.get("reftype") == "term":
        return contnode  # scikit-learn's glossary, in docstrings inherited from it
    if domain != "py":
        return None
    owners = documented_names()
    modname = node.get("py:module") or ""
    classname = node.get("py:class") or ""
    candidates = [target]
    if modname:
        candidates.append(f"{modname}.{target}")
        if classname:
            candidates.append(f"{modname}.{classname}.{target}")
    candidates.append(f"anatcl_sklearn.{target}")
    # A bare name (``DESIKAN_REGIONS`` in another sub-package's docstring): the one public
    # object of that name, if there is exactly one.
    bare = target.lstrip("~.")
    same_name = {full for (name, _), full in owners.items() if name == bare}
    if len(same_name) == 1:
        candidates += same_name
    for candidate in candidates:
        found = _lookup(candidate)
        if found is None:
            continue
        obj, name, rest = found
        canonical = owners.get((name, id(obj)))
        if canonical is None:
            continue
        full = ".".join([canonical, *rest])
        py = env.get_domain("py")
        if full != target:
            resolved = py.resolve_xref(
                env, node["refdoc"], app.builder, node["reftype"], full, node, contnode)
            if resolved is not None:
                return resolved
        if inspect.isclass(obj) and rest and (hasattr(obj, rest[0]) or re.search(
                rf"^\s*{re.escape(rest[0])} :", inspect.getdoc(obj) or "", re.MULTILINE)):
            # A field or attribute without a docstring of its own (a dataclass's
            # ``Task.column``): the class's page, where its parameters say what it is.
            resolved = py.resolve_xref(
                env, node["refdoc"], app.builder, "class", canonical, node, contnode)
            if resolved is not None:
                return resolved
    parts = target.lstrip("~.!").split(".")
    if parts[0] in EXTERNAL_ROOTS:
        return contnode  # another project's name: linked only through intersphinx
    if any(part.startswith("_") and not part.startswith("__") for part in parts):
        return contnode  # a private module or class: not documented, named as text
    return None


def _attr_doc(name, obj):
    """The ``#:`` comment above a constant where it is defined (a private module), or None."""
    for modname, module in list(sys.modules.items()):
        if not modname.startswith("anatcl_sklearn") or getattr(module, name, None) is not obj:
            continue
        try:
            docs = ModuleAnalyzer.for_module(modname).find_attr_docs()
        except PycodeError:
            continue
        if ("", name) in docs:
            return list(docs[("", name)])
    return None


def _constant_docstring(app, what, name, obj, options, lines):
    """A re-exported constant shows the ``#:`` comment of its definition, not its type's
    docstring (autodoc looks for the comment in the module that exports it)."""
    if what not in ("data", "attribute"):
        return
    own = (getattr(obj, "__doc__", None) or "").strip().splitlines()
    if lines and own and lines[0].strip() != own[0].strip():
        return  # a docstring of its own: a ``#:`` comment where it is exported
    lines[:] = _attr_doc(name.rsplit(".", 1)[-1], obj) or []
    if not lines and isinstance(obj, Mapping) and len(repr(obj)) > _SHORT_REPR:
        keys = ", ".join(f"``{key!r}``" for key in obj)
        lines[:] = [f"A mapping with the keys {keys}.", ""]


# Docstring fixes applied while building, until the source is fixed (each is a report to
# the module's owner): {object: [(old, new), ...]}. A fix that no longer matches does nothing.
DOCSTRING_FIXES = {
    # "n_features_out_" outside a literal is an RST hyperlink reference ("Unknown target
    # name"); anatcl_sklearn/embedder/_embedder.py, AnatCLEmbedder.transform, Returns.
    "anatcl_sklearn.AnatCLEmbedder.transform": [
        ("ndarray of shape (n, n_features_out_)", "ndarray of shape ``(n, n_features_out_)``"),
    ],
}


def _fix_docstring(app, what, name, obj, options, lines):
    for old, new in DOCSTRING_FIXES.get(name, ()):
        lines[:] = [line.replace(old, new) for line in lines]


ABOUT_EXAMPLES = "About the examples"


def lead_gallery_with_thumbnails(index_rst):
    """Move the text of a gallery index between its title and its thumbnails below them.

    sphinx-gallery writes the gallery header (examples/README.rst) above the thumbnails; a
    reader comes for the examples, so the page shows them first, then the header's text under
    :data:`ABOUT_EXAMPLES`. Returns whether the file changed (not when already moved or when
    the header is only a title).
    """
    path = Path(index_rst)
    lines = path.read_text(encoding="utf-8").splitlines()
    # The title: the first line underlined with "=".
    title = next((i for i in range(1, len(lines))
                  if lines[i] and set(lines[i]) == {"="} and lines[i - 1].strip()), None)
    thumbnails = next((i for i, line in enumerate(lines) if line == ".. raw:: html"), None)
    signature = next((i for i, line in enumerate(lines)
                      if line.strip() == ".. rst-class:: sphx-glr-signature"), None)
    if title is None or thumbnails is None or signature is None or thumbnails < title:
        return False
    text = lines[title + 1:thumbnails]
    if not any(line.strip() for line in text):
        return False
    # The signature's ".. only:: html" line, above it.
    end = max((i for i in range(thumbnails, signature) if lines[i].startswith(".. only:: html")),
              default=signature)
    moved = [*lines[:title + 1], "", *lines[thumbnails:end],
             ABOUT_EXAMPLES, "-" * len(ABOUT_EXAMPLES), *text, "", *lines[end:]]
    path.write_text("\n".join(moved) + "\n", encoding="utf-8")
    return True


def _lead_galleries_with_thumbnails(app):
    conf = app.config.sphinx_gallery_conf
    gallery_dirs = conf.get("gallery_dirs") or []
    if isinstance(gallery_dirs, str):
        gallery_dirs = [gallery_dirs]
    for gallery in gallery_dirs:
        index = Path(app.srcdir, gallery, "index.rst")
        if index.is_file():
            lead_gallery_with_thumbnails(index)


_PRIVATE_DEFAULT = re.compile(r"=(_[A-Za-z_][A-Za-z0-9_]*)(?=[,)])")


def _private_defaults(app, what, name, obj, options, signature, return_annotation):
    """A default written as a private constant shows its value.

    ``autodoc_preserve_defaults`` shows defaults as written, so that a public constant reads
    ``affine=OPENBHB_AFFINE`` rather than a 4x4 array; a private one
    (``filename=_DEFAULT_TABLE_FILENAME``) names nothing a reader can look up, so it shows its
    value (``filename='{hemi}.aparc_table_{measure}.tsv'``) instead.
    """
    if not signature:
        return None
    module = sys.modules.get(getattr(obj, "__module__", None) or "")

    def value(match):
        if module is None or not hasattr(module, match[1]):
            return match[0]
        return "=" + repr(getattr(module, match[1]))

    return _PRIVATE_DEFAULT.sub(value, signature), return_annotation


_TEXT = re.compile(r">([^<>]+)<")
_NAME_BREAK = re.compile(r"(?<=[._])(?=\w)")


def break_names(html):
    """``html`` with a ``<wbr>`` after every dot and underscore inside a name, in its text.

    The sidebar and the table of contents wrap a long name (``anatcl_sklearn.distributed``,
    ``get_feature_names_out``) there, and ``_static/anatcl.css`` stops them from breaking it
    inside a word.
    """
    return _TEXT.sub(lambda match: ">" + _NAME_BREAK.sub("<wbr>", match[1]) + "<", html)


def _break_names_in_navigation(app, pagename, templatename, context, doctree):
    for key in ("furo_navigation_tree", "toc"):
        if isinstance(context.get(key), str):
            context[key] = break_names(context[key])


def setup(app):
    # After furo (priority 500) has rendered the navigation tree.
    app.connect("html-page-context", _break_names_in_navigation, priority=900)
    # After sphinx-gallery (priority 500) has written the gallery's index page.
    app.connect("builder-inited", _lead_galleries_with_thumbnails, priority=900)
    # After intersphinx (priority 500): only what it could not link reaches this handler.
    app.connect("missing-reference", _missing_reference, priority=900)
    # Before numpydoc (priority 500) reformats the docstring.
    app.connect("autodoc-process-docstring", _constant_docstring, priority=100)
    app.connect("autodoc-process-docstring", _fix_docstring, priority=100)
    app.connect("autodoc-process-signature", _private_defaults)
    return {"parallel_read_safe": True, "parallel_write_safe": True}


# The gallery: the quick start, then the paper's order (Tables 2-6), then the how-tos.
GALLERY_ORDER = (
    "plot_quickstart",
    "plot_pretraining_openbhb",
    "plot_alzheimer",
    "plot_psychiatry",
    "plot_phenotypes",
    "plot_anatomical_features",
    "plot_grid_search",
    "plot_pretrained_weights",
    "plot_from_your_pipeline",
)


class GalleryOrder:
    """sphinx-gallery's ``within_subsection_order``: :data:`GALLERY_ORDER`, then by name."""

    def __init__(self, src_dir):
        self.src_dir = src_dir

    def __call__(self, filename):
        stem = Path(filename).stem
        rank = GALLERY_ORDER.index(stem) if stem in GALLERY_ORDER else len(GALLERY_ORDER)
        return f"{rank:03d}-{stem}"

    def __repr__(self):
        return f"<{type(self).__name__}>"
