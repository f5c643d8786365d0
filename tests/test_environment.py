"""environment.yml (conda) and pyproject.toml (pip) must ask for the same packages."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import yaml

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

ROOT = Path(__file__).resolve().parent.parent
CONDA_TO_PIP = {"pytorch": "torch", "playwright-python": "playwright"}
CONDA_ONLY = {"python", "pip"}


def _split(requirement: str) -> tuple[str, str]:
    name, spec = re.match(r"^\s*([A-Za-z0-9_.\-]+)\s*(.*?)\s*(?:;.*)?$", requirement).groups()
    return name.lower().replace("_", "-"), spec.replace(" ", "")


def test_conda_environment_mirrors_pyproject():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    pip = dict(_split(r) for r in project["dependencies"] + extras["test"] + extras["site"]
               if "python_version" not in r)
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    conda = {}
    for item in env["dependencies"]:
        for requirement in [item] if isinstance(item, str) else item["pip"]:  # pip: PyPI only
            if requirement.startswith("--"):
                continue
            name, spec = _split(requirement)
            if name not in CONDA_ONLY:
                conda[CONDA_TO_PIP.get(name, name)] = spec
    assert conda == pip, (
        "environment.yml and pyproject.toml disagree.\n"
        f"only in environment.yml: {sorted(set(conda.items()) - set(pip.items()))}\n"
        f"only in pyproject.toml:  {sorted(set(pip.items()) - set(conda.items()))}"
    )


def test_conda_environment_installs_the_package_itself():
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip_section = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    assert any("--editable ." in line for line in pip_section)


def test_ci_runs_the_readme_test_command():
    """README's test command is the one CI proves."""
    readme = (ROOT / "README.md").read_text()
    commands = re.findall(r"^(python3 tasks\.py \w+)\s+#", readme, flags=re.M)
    assert commands == ["python3 tasks.py course", "python3 tasks.py test"], commands
    ci = [line.strip() for line in (ROOT / ".ci/run").read_text().splitlines()
          if line.strip() and not line.strip().startswith("#")]
    assert "python3 tasks.py test" in ci
