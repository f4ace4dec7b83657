"""The API pages a reader sees (#17 item 5).

Fast tests check, without building, what the pages are made of (docs/_ext/anatcl_docs.py):
each public name's summary line, its "Examples using" names, a class's method table, the
gallery index and the sidebar's wrapping. The slow test builds the site (``-W``, examples not
run) and reads its HTML.
"""

import html
import importlib
import inspect
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytest.importorskip("sphinx")
sphinx_gallery_backreferences = pytest.importorskip("sphinx_gallery.backreferences")
from sphinx_gallery.py_source_parser import Block  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
sys.path.insert(0, str(DOCS / "_ext"))
import anatcl_docs  # noqa: E402

sys.path.remove(str(DOCS / "_ext"))


def _object(full_name):
    modname, name = full_name.rsplit(".", 1)
    return getattr(importlib.import_module(modname), name)


DOCUMENTED = sorted(set(anatcl_docs.documented_names().values()))
CALLABLES = [name for name in DOCUMENTED if callable(_object(name))]
CONTEXT = anatcl_docs.template_context()  # the autosummary templates' variables


def test_every_public_name_is_documented_once():
    for modname in anatcl_docs.PUBLIC_MODULES:
        module = importlib.import_module(modname)
        for name in module.__all__:
            if name == "__version__":
                continue
            owner = anatcl_docs.documented_names()[(name, id(getattr(module, name)))]
            assert owner in DOCUMENTED
            assert _object(owner) is getattr(module, name), owner
    assert "anatcl_sklearn.AnatCLEmbedder" in DOCUMENTED
    assert "anatcl_sklearn.images.conform_image" in DOCUMENTED
    assert "anatcl_sklearn.datasets.make_synthetic_brains" in DOCUMENTED


@pytest.mark.parametrize("full_name", CALLABLES)
def test_summary_line(full_name):
    """The API index and the method tables show a docstring's first paragraph: one line."""
    doc = inspect.getdoc(_object(full_name))
    assert doc, f"{full_name} has no docstring"
    first = doc.split("\n\n")[0]
    assert len(first.splitlines()) == 1, f"{full_name}: summary over several lines: {first!r}"
    assert first.rstrip().endswith("."), f"{full_name}: summary is not a sentence: {first!r}"


def test_method_summary_lines():
    """A class page's method table shows each method's summary line."""
    checked = 0
    for full_name, methods in CONTEXT["anatcl_methods"].items():
        cls = _object(full_name)
        for method in methods:
            doc = inspect.getdoc(getattr(cls, method)) or ""
            first = doc.split("\n\n")[0]
            assert first and len(first.splitlines()) == 1, f"{full_name}.{method}: {first!r}"
            checked += 1
    assert checked >= 20


@pytest.mark.parametrize(
    "full_name", [name for name in DOCUMENTED if name not in CALLABLES])
def test_constant_summary(full_name):
    """A constant's summary is the ``#:`` comment above its definition (or its own doc)."""
    obj = _object(full_name)
    name = full_name.rsplit(".", 1)[1]
    lines = anatcl_docs._attr_doc(name, obj)
    assert lines and lines[0].strip(), f"{full_name} has no #: comment"


def _backrefs_recorded(source):
    """The names sphinx-gallery records for the ``anatcl_sklearn`` objects a script uses."""
    blocks = [Block("code", source, 1)]
    found = sphinx_gallery_backreferences.identify_names(blocks, r"(?!)")
    return {f"{cobj['module_short']}.{cobj['name']}" for cobjs in found.values()
            for cobj in cobjs if cobj["module"].startswith("anatcl_sklearn")}


@pytest.mark.parametrize("full_name", DOCUMENTED)
def test_examples_using_finds_every_import(full_name):
    """However an example imports a public object, its page's "Examples using" lists it.

    sphinx-gallery records the use under the shortest module path holding the object
    (``anatcl_sklearn.conform_image``), which is not always the documented one
    (``anatcl_sklearn.images.conform_image``); the page's minigallery asks for every name.
    """
    obj = _object(full_name)
    name = full_name.rsplit(".", 1)[1]
    names = anatcl_docs.backreference_names(full_name)
    assert names[0] == full_name
    importers = [modname for modname in (*anatcl_docs.PUBLIC_MODULES, "anatcl_sklearn.embedder")
                 if getattr(importlib.import_module(modname), name, None) is obj]
    assert importers
    for modname in importers:
        recorded = _backrefs_recorded(f"from {modname} import {name}\n{name}\n")
        assert recorded, (modname, name)
        assert recorded <= set(names), (modname, recorded, names)
    assert CONTEXT["anatcl_backrefs"][full_name] == names


def test_examples_using_sub_package_names():
    """The case of the issue: imported from the sub-package, recorded under the top level."""
    recorded = _backrefs_recorded(
        "from anatcl_sklearn.datasets import make_synthetic_brains\n"
        "from anatcl_sklearn.images import conform_image\n"
        "make_synthetic_brains(2)\nconform_image\n")
    assert recorded == {"anatcl_sklearn.make_synthetic_brains", "anatcl_sklearn.conform_image"}
    assert "anatcl_sklearn.conform_image" in anatcl_docs.backreference_names(
        "anatcl_sklearn.images.conform_image")
    assert "anatcl_sklearn.make_synthetic_brains" in anatcl_docs.backreference_names(
        "anatcl_sklearn.datasets.make_synthetic_brains")


def test_class_method_tables():
    from anatcl_sklearn import AnatCLEmbedder, AnatCLModel, GridWarning

    members, methods = anatcl_docs.class_members(AnatCLEmbedder)
    for name in ("fit", "transform", "fit_transform", "get_feature_names_out",
                 "save_pretrained", "get_params", "set_params"):
        assert name in methods
    assert set(methods) <= set(members)
    members, methods = anatcl_docs.class_members(AnatCLModel)
    assert "forward" in methods and "encode" in methods
    assert not {"cuda", "eval", "state_dict", "register_buffer"} & set(members)
    assert anatcl_docs.class_members(GridWarning) == ([], [])
    assert CONTEXT["anatcl_methods"]["anatcl_sklearn.AnatCLEmbedder"] == \
        anatcl_docs.class_members(AnatCLEmbedder)[1]


def test_templates_use_the_context():
    for template in ("class.rst", "function.rst", "data.rst", "data_novalue.rst"):
        text = (DOCS / "_templates" / template).read_text()
        assert ".. minigallery:: {{ anatcl_backrefs.get(fullname" in text, template
    assert "anatcl_methods" in (DOCS / "_templates" / "class.rst").read_text()


def test_conform_image_default_as_written():
    """autodoc shows ``affine=OPENBHB_AFFINE`` only if the default is written so."""
    from anatcl_sklearn.images import conform_image

    source = inspect.getsource(conform_image)
    header = source[:source.index(")")]
    assert re.search(r"\baffine\b[^,=]*=\s*OPENBHB_AFFINE\b", header), header
    conf = (DOCS / "conf.py").read_text()
    assert re.search(r"^autodoc_preserve_defaults = True$", conf, re.MULTILINE)


def test_private_defaults_show_their_value():
    from anatcl_sklearn.anatomy import read_aparcstats2table

    signature = "(directory, *, filename=_DEFAULT_TABLE_FILENAME)"
    new, _ = anatcl_docs._private_defaults(None, "function", "x", read_aparcstats2table, {},
                                           signature, None)
    assert new == "(directory, *, filename='{hemi}.aparc_table_{measure}.tsv')"
    kept = "(img, shape=OPENBHB_SHAPE, affine=OPENBHB_AFFINE, x=_NOT_THERE)"
    assert anatcl_docs._private_defaults(None, "function", "x", read_aparcstats2table, {},
                                         kept, None)[0] == kept


def test_break_names():
    out = anatcl_docs.break_names(
        '<a class="reference" href="api/anatcl_sklearn.distributed.html">'
        '<code><span class="pre">anatcl_sklearn.distributed</span></code></a>'
        '<a href="x.html">User guide. End</a>')
    assert 'href="api/anatcl_sklearn.distributed.html"' in out
    assert ">anatcl_<wbr>sklearn.<wbr>distributed<" in out
    assert ">User guide. End<" in out


GALLERY_INDEX = textwrap.dedent("""\
    :orphan:

    .. _examples:

    Examples
    ========

    A long introduction.

    A second paragraph.


    .. raw:: html

        <div class="sphx-glr-thumbnails">

    THUMBNAILS

    .. toctree::
       :hidden:

       /auto_examples/plot_a


    .. only:: html

     .. rst-class:: sphx-glr-signature

        `Gallery generated by Sphinx-Gallery <https://sphinx-gallery.github.io>`_
    """)


def test_gallery_index_leads_with_thumbnails(tmp_path):
    index = tmp_path / "index.rst"
    index.write_text(GALLERY_INDEX)
    assert anatcl_docs.lead_gallery_with_thumbnails(index)
    text = index.read_text()
    assert text.index("THUMBNAILS") < text.index(anatcl_docs.ABOUT_EXAMPLES) \
        < text.index("A long introduction.") < text.index("sphx-glr-signature")
    assert text.index(".. _examples:") < text.index("Examples\n========")
    assert "/auto_examples/plot_a" in text and "A second paragraph." in text
    assert not anatcl_docs.lead_gallery_with_thumbnails(index)  # already moved
    assert index.read_text() == text


# -- The built site ----------------------------------------------------------------------


def _text(fragment):
    return html.unescape(re.sub(r"<[^>]+>", "", fragment)).replace("\u00b6", "").strip()


def _section(page, heading):
    """The HTML of the section whose heading starts with ``heading``."""
    match = re.search(r"<section[^>]*>\s*<h\d>" + re.escape(heading) + r".*?</section>",
                      page, re.DOTALL)
    return match[0] if match else ""


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    out = tmp_path_factory.mktemp("docs")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])}
    done = subprocess.run(
        [sys.executable, "-m", "sphinx", "-W", "-q", "-b", "html", "-D", "plot_gallery=0",
         "-d", str(out / "doctrees"), str(DOCS), str(out / "html")],
        capture_output=True, text=True, env=env, cwd=ROOT)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-5000:]
    return out / "html"


@pytest.mark.slow
def test_site_api_index_summaries(site):
    page = (site / "api" / "index.html").read_text()
    rows = re.findall(r"<tr[^>]*>(.*?)</tr>", page, re.DOTALL)
    names = set()
    for row in rows:
        cells = re.findall(r"<td[^>]*>(.*?)</td>", row, re.DOTALL)
        assert len(cells) == 2, row
        names.add(_text(cells[0]))
        summary = _text(cells[1])
        assert summary, f"no summary for {_text(cells[0])}"
        # autosummary cuts a summary at its first sentence: "a ... b" left "a ."
        assert not summary.endswith(" ."), f"cut summary for {_text(cells[0])}: {summary!r}"
    for name in ("AnatCLEmbedder", "conform_image", "make_synthetic_brains", "OPENBHB_AFFINE",
                 "DESIKAN_REGIONS", "anatcl_loss"):
        assert name in names
    assert len(names) >= len(DOCUMENTED) - 5


@pytest.mark.slow
def test_site_class_method_table(site):
    page = (site / "api" / "generated" / "anatcl_sklearn.AnatCLEmbedder.html").read_text()
    table = page[page.index(">Methods</p>"):]
    table = table[:table.index("</table>")]
    listed = {_text(cell) for cell in re.findall(r"<td>(.*?)</td>", table, re.DOTALL)}
    for method in ("fit", "transform", "fit_transform", "get_feature_names_out",
                   "save_pretrained"):
        assert method in listed
        assert f'id="anatcl_sklearn.AnatCLEmbedder.{method}"' in page  # documented below


@pytest.mark.slow
def test_site_conform_image_signature(site):
    page = (site / "api" / "generated" / "anatcl_sklearn.images.conform_image.html").read_text()
    signature = _text(re.search(r'<dt class="sig[^"]*".*?</dt>', page, re.DOTALL)[0])
    assert "affine=OPENBHB_AFFINE" in signature
    assert "array(" not in signature
    for path in (site / "api" / "generated").glob("*.html"):
        for dt in re.findall(r'<dt class="sig[^"]*".*?</dt>', path.read_text(), re.DOTALL):
            text = _text(dt)
            assert "array(" not in text and not re.search(r"=_[A-Za-z]", text), (path, text)


@pytest.mark.slow
@pytest.mark.parametrize("page", ["anatcl_sklearn.AnatCLEmbedder",
                                  "anatcl_sklearn.images.conform_image",
                                  "anatcl_sklearn.datasets.make_synthetic_brains"])
def test_site_examples_using(site, page):
    """sphinx-gallery finds the uses in the examples' code without running them."""
    text = (site / "api" / "generated" / f"{page}.html").read_text()
    section = _section(text, "Examples using")
    assert section, f"{page}: no 'Examples using'"
    assert 'class="sphx-glr-thumbcontainer"' in section


@pytest.mark.slow
def test_site_examples_using_every_used_name(site):
    """Every documented object an example uses has its examples on its page."""
    import json

    recorded = json.loads((DOCS / "api" / "backreferences" / "backreferences_all.json")
                          .read_text())
    owners = anatcl_docs.documented_names()
    checked = 0
    for key, examples in recorded.items():
        found = anatcl_docs._lookup(key)
        if not examples or found is None or found[2]:
            continue  # not used, not public (anatcl_sklearn.__main__.main) or a method
        obj, name, _ = found
        documented = owners.get((name, id(obj)))
        if documented is None:
            continue
        page = (site / "api" / "generated" / f"{documented}.html").read_text()
        section = _section(page, "Examples using")
        for example in examples:
            assert f'href="../../auto_examples/{Path(example[0]).stem}.html' in section, \
                (key, documented, example[0])
        checked += 1
    assert checked >= 3


@pytest.mark.slow
def test_site_gallery_and_sidebar(site):
    page = (site / "auto_examples" / "index.html").read_text()
    body = page[page.index('<article'):]
    assert body.index("sphx-glr-thumbcontainer") < body.index(anatcl_docs.ABOUT_EXAMPLES)
    first_paragraph = body.index("<p>")
    assert body.index("sphx-glr-thumbcontainer") < first_paragraph
    api = (site / "api" / "index.html").read_text()
    assert "anatcl_<wbr>sklearn.<wbr>distributed" in api
    css = (site / "_static" / "anatcl.css").read_text()
    assert "overflow-wrap: normal" in css and 'href="../_static/anatcl.css' in api
