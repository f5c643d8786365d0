"""Sphinx settings of the course website (``python3 tasks.py site``; see build.py).

Sphinx with myst-nb and sphinx-book-theme, the Jupyter Book 1 stack: myst-nb executes each
notebook once and keeps its outputs in a jupyter-cache, keyed by the code of its cells, so
a rebuild runs only the notebooks whose code changed. Nothing comes from the network: the
theme's assets ship with it, MathJax 3 is copied from the ``sphinx-mathjax-offline`` wheel
into _static/, and the ipywidgets manager (only on a CDN) is left out: sliders show as the
picture at their starting values (nfcourse.widgets).
"""

import os

project = "nfcourse"
author = "the nfcourse authors"
copyright = "2026, the nfcourse authors"
title = "Variational Inference with Normalizing Flows"

extensions = ["myst_nb"]
# conf.py is staged beside the pages; downloads/ holds the student notebooks, as files
exclude_patterns = ["conf.py", "downloads", "_build", "**/.ipynb_checkpoints", "jupyter_execute"]
# the solution notebooks are jupytext's percent-format .py files
nb_custom_formats = {".py": ["jupytext.reads", {"fmt": "py:percent"}]}
myst_enable_extensions = ["dollarmath", "amsmath"]
myst_heading_anchors = 3
suppress_warnings = ["myst.header", "mystnb.unknown_mime_type", "misc.highlighting_failure"]

nb_execution_mode = "cache"
nb_execution_cache_path = os.environ["NFCOURSE_SITE_CACHE"]
nb_execution_timeout = 1200               # a cell; each notebook keeps to its own budget
nb_execution_raise_on_error = True        # a failing assert fails the build: it is the test
nb_execution_show_tb = True
nb_merge_streams = True
nb_ipywidgets_js = {}                     # the widget manager lives on a CDN only
nb_render_image_options = {"width": "100%"}

mathjax_path = "mathjax/tex-chtml.js"     # MathJax 3, copied from sphinx-mathjax-offline

html_theme = "sphinx_book_theme"
html_title = title
html_static_path = ["_static"]
html_favicon = "_static/favicon.svg"     # else every browser asks for /favicon.ico
html_theme_options = {
    "show_toc_level": 2,
    "use_download_button": False,
    "use_fullscreen_button": False,
    "home_page_in_toc": True,
}
html_context = {"default_mode": "light"}
html_last_updated_fmt = None
html_copy_source = False
html_show_sourcelink = False
