"""The package's layers: every import inside ``nfcourse`` points down, never up, and
sideways (within a layer) only where :data:`SIDEWAYS` lists it, so that a layer's units do
not quietly grow into one tangle. The layers are read from the package docstring, so the
docstring stays true."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

import nfcourse

PACKAGE = Path(nfcourse.__file__).parent


def layers_from_docstring(doc: str) -> dict[str, int]:
    """``{top-level module: layer}`` from lines ``N. ``a``, ``b``: ...`` of the docstring."""
    layers = {}
    for number, names in re.findall(r"^(\d)\. ([^:]*):", doc, flags=re.M):  # may wrap
        for name in re.findall(r"``(\w+)``", names):
            layers[name] = int(number)
    return layers


LAYERS = layers_from_docstring(nfcourse.__doc__)

#: the imports allowed within a layer: (importer, imported), each with its reason
SIDEWAYS = {
    ("compiled", "objectives"),   # the compiled step calls an objective's loss
    ("callbacks", "objectives"),  # validation computes the objective's mean bound
    ("train", "objectives"),      # the loop trains on an objective
    ("train", "compiled"),        # ... with the step of nfcourse.compiled
    ("train", "callbacks"),       # ... and the callbacks its settings ask for
    ("checks", "curriculum"),     # a self-check knows which notebook it is in
    ("exercises", "curriculum"),  # the exercises are the solution notebooks' marked regions
    ("exercises", "checks"),      # ... a code part numbered by its self-check; the record's rule
    ("__main__", "progress_report"),  # the command line prints the progress tables
    ("__main__", "comparison"),       # ... and an answer beside the solution's
}


def top_level(path: Path) -> str:
    """The top-level unit a file belongs to: ``flows`` for nfcourse/flows/planar.py."""
    return path.relative_to(PACKAGE).parts[0].removesuffix(".py")


def imported_units(source: str) -> set[str]:
    """The top-level ``nfcourse`` units a module's source imports, wherever the import is
    (module level or inside a function)."""
    units = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
            if node.module == "nfcourse":  # from nfcourse import objectives, pick
                names = [f"nfcourse.{alias.name}" for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level > 0:
            raise AssertionError("relative import: write `from nfcourse.x import y`")
        else:
            continue
        for name in names:
            parts = name.split(".")
            if parts[0] == "nfcourse" and len(parts) > 1 and parts[1] in LAYERS:
                units.add(parts[1])
    return units


def violations(unit: str, source: str) -> list[str]:
    return [f"{unit} (layer {LAYERS[unit]}) imports {other} (layer {LAYERS[other]})"
            for other in sorted(imported_units(source))
            if LAYERS[other] > LAYERS[unit] or (LAYERS[other] == LAYERS[unit] and other != unit
                                                and (unit, other) not in SIDEWAYS)]


MODULES = sorted(p for p in PACKAGE.rglob("*.py") if p.name != "__init__.py"
                 or p.parent != PACKAGE)


def test_the_docstring_names_every_layer_in_order():
    assert sorted(set(LAYERS.values())) == list(range(6))
    assert LAYERS["flows"] < LAYERS["models"] < LAYERS["train"]


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_imports_point_down(path: Path):
    unit = top_level(path)
    assert unit in LAYERS, (f"{unit} is in no layer: add it to the layer list in "
                            "nfcourse/__init__.py's docstring")
    assert violations(unit, path.read_text()) == []


def test_the_check_catches_an_upward_import():
    assert violations("flows", "from nfcourse.models import VAE\n") == [
        "flows (layer 2) imports models (layer 3)"]
    assert violations("data", "def f():\n    from nfcourse import train\n") == [
        "data (layer 1) imports train (layer 4)"]
    assert violations("models", "import nfcourse.objectives as o\n") == [
        "models (layer 3) imports objectives (layer 4)"]
    assert violations("train", "from nfcourse.models import VAE\nfrom nfcourse import pick\n") == []
    assert violations("objectives", "from nfcourse.train import fit\n") == [
        "objectives (layer 4) imports train (layer 4)"]            # sideways, not listed
    assert violations("train", "from nfcourse.objectives import Bound\n") == []  # listed
    assert violations("vi", "from nfcourse.models import VAE\n") == [
        "vi (layer 3) imports models (layer 3)"]
