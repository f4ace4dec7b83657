"""ARCHITECTURE.md stays true: its layout names every module of the package, and only those."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "anatcl_sklearn"


def _layout_block():
    text = (ROOT / "ARCHITECTURE.md").read_text(encoding="utf-8")
    section = text.split("## Layout", 1)[1]
    return section.split("```", 2)[1].splitlines()


def named_modules():
    """Paths (relative to anatcl_sklearn/) that the layout names.

    A name at 2 spaces is at the package's top; a name ending in ``/`` opens a sub-package whose
    files follow two spaces deeper (sub-sub-packages likewise); several names may share a line,
    separated by commas; a package line mentioning ``__init__.py`` names it.
    """
    named, prefixes = set(), {}
    for line in _layout_block():
        match = re.match(r"^( +)(\S.*?)(?:\s{2,}(.*))?$", line)
        if not match:
            continue
        indent, names, description = len(match.group(1)), match.group(2), match.group(3) or ""
        if indent == 2:
            prefix = ""
        elif indent - 2 in prefixes:
            prefix = prefixes[indent - 2]
        else:
            continue  # a description's continuation line
        prefixes = {k: v for k, v in prefixes.items() if k < indent}
        for name in (n.strip() for n in names.split(",")):
            if name.endswith("/"):
                prefixes[indent] = prefix + name
                if "__init__.py" in description:
                    named.add(f"{prefix}{name}__init__.py")
            else:
                named.add(prefix + name)
    return named


def package_modules():
    files = [*PACKAGE.rglob("*.py"), *PACKAGE.rglob("py.typed")]
    return {p.relative_to(PACKAGE).as_posix() for p in files if "__pycache__" not in p.parts}


def test_architecture_names_every_module():
    missing = sorted(package_modules() - named_modules() - {"__init__.py"})
    assert not missing, f"ARCHITECTURE.md's layout does not name: {missing}"


def test_architecture_names_no_module_that_does_not_exist():
    stale = sorted(named_modules() - package_modules())
    assert not stale, f"ARCHITECTURE.md's layout names modules that do not exist: {stale}"


def test_the_layout_parser_sees_the_sub_packages():
    named = named_modules()
    assert {"images/_grid.py", "losses/_options.py", "exceptions.py", "datasets/_synthetic/__init__.py",
            "datasets/_synthetic/_rendering.py"} <= named
    assert "_rendering.py" not in named and "datasets/_rendering.py" not in named


def test_no_module_is_over_450_lines():
    """One idea per module (#18: "no module over ~450 lines"); a module that outgrows it gets
    a sub-package, as models/, losses/ and datasets/_synthetic/ did. (It replaces a test that
    listed images/' modules by name: ARCHITECTURE.md's layout, checked above, is that list.)"""
    long = {name: n for name in package_modules() if name.endswith(".py")
            if (n := len((PACKAGE / name).read_text(encoding="utf-8").splitlines())) > 450}
    assert not long, f"modules over 450 lines: {long}"
