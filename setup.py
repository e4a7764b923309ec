"""Import names live under one namespace, pyconsul.*: the wheel installs no generic top-level names (agent,
lab and chaos exist on the package index), while the folders stay where the layout puts them. pyproject.toml
holds everything else; only this mapping needs code (setuptools cannot prefix discovered packages statically).
mypy resolves the same names through scripts/mypy.sh's shim (a `pyconsul` symlink to the repository)."""

from setuptools import find_packages, setup

ROOTS = ("agent", "lab", "chaos")

setup(
    packages=[f"pyconsul.{p}" for p in find_packages(include=[*ROOTS, *(f"{r}.*" for r in ROOTS)])],
    package_dir={f"pyconsul.{r}": r for r in ROOTS},
)
