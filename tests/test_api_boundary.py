"""Notebooks, scripts, benchmarks and tools use ``nfcourse`` through its public names only,
and none of them knows the layout of the encoder's output λ: ``q = model.posterior(λ)``
(``nfcourse.models.posteriors``, the one place λ is laid out) names its pieces. If λ were
reordered, a slice elsewhere would go wrong without a word; this test keeps them out."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
USERS = sorted(p for folder in ("solutions", "curriculum", "scripts", "benchmarks", "tools")
               for p in (ROOT / folder).rglob("*.py"))

#: where λ comes from, and the names code gives it
ENCODER_CALLS = {"encoder", "encode"}
LAMBDA_NAMES = re.compile(r"^(lam|lambda|encoded|params)(_\w+)?$")
SLICING_METHODS = {"split", "chunk", "unflatten", "narrow", "unbind", "tensor_split"}


def private_uses(tree: ast.AST) -> list[str]:
    """``x._name`` anywhere (``__dunder__`` allowed)."""
    return [f"line {node.lineno}: .{node.attr}" for node in ast.walk(tree)
            if isinstance(node, ast.Attribute) and node.attr.startswith("_")
            and not node.attr.startswith("__")]


def lambda_names(tree: ast.AST) -> set[str]:
    """Names assigned from ``….encoder(…)``/``….encode(…)``, and names that say λ."""
    names = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name) and LAMBDA_NAMES.match(n.id)}
    for node in ast.walk(tree):
        if (isinstance(node, ast.Assign) and isinstance(node.value, ast.Call)
                and isinstance(node.value.func, ast.Attribute)
                and node.value.func.attr in ENCODER_CALLS):
            names |= {t.id for t in node.targets if isinstance(t, ast.Name)}
    return names


def along_features(call: ast.Call) -> bool:
    """Whether a split-like call cuts the last axis (λ's pieces), not the batch: a list of
    sizes, or an axis -1 (or ≥ 1) among its arguments."""
    args = call.args + [k.value for k in call.keywords]
    if call.args and isinstance(call.args[0], (ast.List, ast.Tuple)):
        return True
    return any(isinstance(a, ast.UnaryOp) and isinstance(a.op, ast.USub)
               or isinstance(a, ast.Constant) and isinstance(a.value, int) and a.value >= 1
               and a is not call.args[0] for a in args)


def slices_of_lambda(tree: ast.AST) -> list[str]:
    """λ sliced by hand: ``lam[:, a:b]``, ``lam.split(…)``, ``encoder(x)[…]``, and the old
    splitting helpers ``posterior.split`` / ``DiagonalGaussian.split``."""
    names, found = lambda_names(tree), []

    def is_lambda(node) -> bool:
        if isinstance(node, ast.Subscript):   # a piece of λ, or a flow's kwargs["params"]
            return is_lambda(node.value) or (isinstance(node.slice, ast.Constant)
                                             and node.slice.value == "params")
        return ((isinstance(node, ast.Name) and node.id in names)
                or (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                    and node.func.attr in ENCODER_CALLS))

    for node in ast.walk(tree):
        if isinstance(node, ast.Subscript) and is_lambda(node.value):
            index = node.slice.elts if isinstance(node.slice, ast.Tuple) else [node.slice]
            if len(index) > 1 and any(isinstance(i, ast.Slice) and (i.lower or i.upper)
                                      for i in index[1:]):
                found.append(f"line {node.lineno}: {ast.unparse(node)}")
        elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
              and node.func.attr in SLICING_METHODS
              and ((is_lambda(node.func.value) and along_features(node))
                   or (node.func.attr == "split" and ast.unparse(node.func.value).endswith(
                       ("posterior", "DiagonalGaussian"))))):
            found.append(f"line {node.lineno}: {ast.unparse(node)}")
    return found


@pytest.mark.parametrize("path", USERS, ids=lambda p: str(p.relative_to(ROOT)))
def test_no_private_names_and_no_hand_sliced_lambda(path: Path):
    tree = ast.parse(path.read_text())
    assert private_uses(tree) == [], "use nfcourse's public names"
    assert slices_of_lambda(tree) == [], ("use q = model.posterior(λ): q.mu, q.log_var, "
                                          "q.base, q.flow.layers[k]")


def test_the_checks_catch_what_the_old_code_did():
    """Lines from the notebooks and scripts before q(z | x) became an object."""
    old = [
        "base, kwargs = model.posterior._split(lam)",
        "lam_g = refine(gaussian_view, encoded[:, :z2], gaussian_name)",
        "mu, log_var = model.posterior.split(model.encode(x))",
        "mu = DiagonalGaussian.split(lam_g_star)[0][0]",
        "params = kwargs['params'].unflatten(-1, (10, 81))\nu = params[:, 0].split([4, 4, 1], -1)",
        "lam = self.encoder(x)\nmu, log_var, flow = lam.split([Z, Z, 3], dim=-1)",
        "mu = model.encoder(x)[:, :40]",
    ]
    for source in old:
        tree = ast.parse(source)
        assert private_uses(tree) or slices_of_lambda(tree), source
    fine = "q = model.q(x)\nmu, log_var = q.mu, q.log_var\nz, _ = q.flow(q.base.sample(3))\n" \
           "batches = x.split(100)\nfirst = lam[:5]"
    assert private_uses(ast.parse(fine)) == slices_of_lambda(ast.parse(fine)) == []
