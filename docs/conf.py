"""Sphinx configuration of the anatcl-sklearn documentation.

Build (warnings are errors)::

    pip install -e ".[docs]"
    python -m sphinx -W -b html docs docs/_build/html

Environment variables:

``ANATCL_EXAMPLES_FAST``
    The gallery runs every example in its fast mode (``1``, the default here) or, with ``0``,
    in the default mode users run (see examples/README.rst for its run times).
    ``-D plot_gallery=0`` skips running the examples altogether.
``ANATCL_DOCS_INTERSPHINX=1``
    Link names of scikit-learn, numpy, torch, nibabel, skorch... to their documentation.
    This downloads their ``objects.inv`` inventories, so it needs the network; without it
    (the default, and CI) those names are plain text and the build needs no network.
"""

import os
import shutil
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE / "_ext"))

import anatcl_docs  # noqa: E402

import anatcl_sklearn  # noqa: E402

# The gallery renders the fast mode unless asked otherwise, and writes its files under
# _build rather than examples/output.
os.environ.setdefault("ANATCL_EXAMPLES_FAST", "1")
os.environ.setdefault("ANATCL_EXAMPLES_OUTPUT", str(HERE / "_build" / "example-output"))
os.environ.setdefault("MPLBACKEND", "Agg")
GALLERY_FAST = os.environ["ANATCL_EXAMPLES_FAST"] not in ("", "0")
# sphinx-gallery reruns an example only when its file changes: after a switch between the
# fast and the default mode, run them all again.
_MODE_STAMP = HERE / "auto_examples" / ".anatcl-examples-mode"
if _MODE_STAMP.is_file() and _MODE_STAMP.read_text() != str(GALLERY_FAST):
    shutil.rmtree(HERE / "auto_examples")

# -- Project ---------------------------------------------------------------------------

project = "anatcl-sklearn"
author = "anatcl-sklearn developers"
copyright = "2026, anatcl-sklearn developers"
release = anatcl_sklearn.__version__
version = release

# -- General ---------------------------------------------------------------------------

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.intersphinx",
    "numpydoc",
    "sphinx_gallery.gen_gallery",
    "myst_parser",
    "anatcl_docs",
]

source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build", "Thumbs.db", ".DS_Store", "**.ipynb_checkpoints",
                    "auto_examples/*.ipynb", "auto_examples/*.py", "auto_examples/*.zip"]
templates_path = ["_templates"]
# Every reference must resolve: a broken one is a warning, and -W makes it an error.
# Names of other projects are linked by intersphinx or left as text (_ext/anatcl_docs.py).
nitpicky = True
default_role = "literal"
suppress_warnings = []

# The API pages come from the public modules' __all__, rewritten on every build.
anatcl_docs.write_api_pages(HERE / "api")

# -- autodoc, autosummary, numpydoc ----------------------------------------------------

autosummary_generate = True
autosummary_imported_members = True
autodoc_default_options = {"inherited-members": False}
autodoc_typehints = "none"
autodoc_member_order = "bysource"
autoclass_content = "class"
# Signatures show a default as written in the source (``affine=OPENBHB_AFFINE``), not its
# value (a 4x4 array).
autodoc_preserve_defaults = True
# The templates' per-object variables: the names sphinx-gallery may record an object's uses
# under ("Examples using"), each class's documented members and methods (its method table).
autosummary_context = anatcl_docs.template_context()

numpydoc_show_class_members = False
numpydoc_class_members_toctree = False
numpydoc_xref_param_type = False
numpydoc_attributes_as_param_list = True

# -- intersphinx -----------------------------------------------------------------------

INTERSPHINX = os.environ.get("ANATCL_DOCS_INTERSPHINX", "0") not in ("", "0")
intersphinx_mapping = {
    "python": ("https://docs.python.org/3", None),
    "numpy": ("https://numpy.org/doc/stable/", None),
    "scipy": ("https://docs.scipy.org/doc/scipy/", None),
    "sklearn": ("https://scikit-learn.org/stable/", None),
    "torch": ("https://docs.pytorch.org/docs/stable/", None),
    "nibabel": ("https://nipy.org/nibabel/", None),
    "skorch": ("https://skorch.readthedocs.io/en/stable/", None),
    "pandas": ("https://pandas.pydata.org/docs/", None),
    "joblib": ("https://joblib.readthedocs.io/en/stable/", None),
    "matplotlib": ("https://matplotlib.org/stable/", None),
} if INTERSPHINX else {}
intersphinx_timeout = 30

# -- sphinx-gallery --------------------------------------------------------------------

sphinx_gallery_conf = {
    "examples_dirs": "../examples",
    "gallery_dirs": "auto_examples",
    "filename_pattern": r"/plot_",
    "within_subsection_order": "anatcl_docs.GalleryOrder",
    "doc_module": ("anatcl_sklearn",),
    "backreferences_dir": "api/backreferences",
    "image_scrapers": ("matplotlib",),
    "abort_on_example_error": True,
    "remove_config_comments": True,
    "min_reported_time": 0,
    "show_memory": False,
    "download_all_examples": False,
}

# -- MyST (benchmarks/RESULTS.md is included as it is) ---------------------------------

myst_heading_anchors = 3

# -- HTML ------------------------------------------------------------------------------

html_theme = "furo"
html_title = f"anatcl-sklearn {release}"
html_static_path = ["_static"]
# Names in the sidebar wrap at dots and underscores, never inside a word.
html_css_files = ["anatcl.css"]
html_show_sourcelink = False
html_last_updated_fmt = None

_MODE = "fast mode (ANATCL_EXAMPLES_FAST=1)" if GALLERY_FAST else "default mode"


def _stamp_mode(app, exception):
    if exception is None and (HERE / "auto_examples").is_dir():
        _MODE_STAMP.write_text(str(GALLERY_FAST))


def setup(app):
    app.connect("build-finished", _stamp_mode)


rst_epilog = f"""
.. |gallery-mode| replace:: {_MODE}
"""
