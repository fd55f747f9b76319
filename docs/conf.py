"""Sphinx configuration of the bluesky-digitwin documentation.

Build it (warnings are errors, as in CI) with ``.ci/build-docs``, or::

    python -m sphinx -W --keep-going -b html docs docs/_build/html

The pages are MyST Markdown; the API reference is generated from the numpy-style docstrings of
the *installed* package (autodoc + napoleon). Nothing here reaches the network: no intersphinx.
"""

from __future__ import annotations

import os
import re
import sys
from importlib import metadata
from pathlib import Path

# Document the installed package, not the source tree. `python -m sphinx` from the checkout's
# root puts the root first on sys.path, where bluesky_digitwin lacks plans/ and callbacks/ (they
# install into it from the top-level folders; see tests/conftest.py).
_ROOT = Path(__file__).resolve().parents[1]
sys.path[:] = [p for p in sys.path if Path(p or os.curdir).resolve() != _ROOT]

# Importing the modules for autodoc starts TensorFlow here and there: keep it quiet and small.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("DIGITWIN_TF_THREADS", "1")

# -- project -------------------------------------------------------------------------------------

project = "bluesky-digitwin"
author = "bluesky-digitwin developers"
# No year: the build must not depend on the day it runs.
copyright = "bluesky-digitwin developers, BSD-3-Clause"
release = metadata.version("bluesky-digitwin")
version = release

# -- general -------------------------------------------------------------------------------------

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
]
source_suffix = {".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build", "Thumbs.db", ".DS_Store"]
language = "en"

myst_enable_extensions = ["colon_fence", "deflist"]
# Anchors for headings down to ###, so pages can link to sections: [text](page.md#a-section).
myst_heading_anchors = 3

# -- API reference -------------------------------------------------------------------------------

autodoc_default_options = {
    "members": True,
    "member-order": "bysource",
    "show-inheritance": True,
}
# Types go into the parameter lists rather than into long signatures.
autodoc_typehints = "description"
autodoc_typehints_description_target = "documented"
autodoc_preserve_defaults = True

napoleon_google_docstring = False
napoleon_numpy_docstring = True
# "Attributes" sections as field lists: as separate attribute entries they would clash with
# the ones autodoc writes for dataclass fields and properties.
napoleon_use_ivar = True

# The docstrings write the magnitude of the magnetic entropy change as |ΔS_M|, as the README,
# the CLI and the plots do, which reads well in help(). In reStructuredText, |name| would be a
# substitution reference (undefined): here the bars are escaped so that it shows as written.
_ABSOLUTE_VALUE = re.compile(r"\|(ΔS_M)\|")
_INLINE_LITERAL = re.compile(r"(``.+?``)")


def _absolute_values(app, what, name, obj, options, lines):
    for i, line in enumerate(lines):
        parts = _INLINE_LITERAL.split(line)  # odd parts are ``literals``: left as they are
        parts[::2] = [_ABSOLUTE_VALUE.sub(r"\\|\1\\|", part) for part in parts[::2]]
        lines[i] = "".join(parts)


def setup(app):
    app.connect("autodoc-process-docstring", _absolute_values)


# -- HTML ----------------------------------------------------------------------------------------

html_theme = "furo"
html_title = f"bluesky-digitwin {release}"
html_static_path: list[str] = []
html_last_updated_fmt = None
html_copy_source = False
