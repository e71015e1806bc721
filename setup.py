"""Package discovery for setuptools (the metadata is in pyproject.toml).

``lipopt`` and every subpackage are found by ``setuptools.find_packages`` (a new subpackage needs no
listing); the ``solvers/`` directory is installed as ``lipopt_solvers`` through the ``package-dir``
mapping in pyproject.toml. A ``[tool.setuptools.packages.find]`` table names packages after their
directories, so it cannot install ``solvers/`` under another name: hence this file.
"""

from setuptools import find_packages, setup

setup(packages=[*find_packages(include=["lipopt", "lipopt.*"]), "lipopt_solvers"])
