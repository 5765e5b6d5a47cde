"""The package version, in a module that imports nothing.

``pyproject.toml`` reads it from here (``[tool.setuptools.dynamic]``), and modules that record the version
(checkpoints, Hub configs, sweep studies, metric protocols) import it from here rather than importing the
whole package for one string.
"""

__version__ = "0.2.0"
