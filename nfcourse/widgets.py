"""Sliders beside a picture: ``ipywidgets.interact`` in JupyterLab, and on a static page the
picture at the sliders' starting values.

A static page (the course website, built by ``python3 tasks.py site`` with
``NFCOURSE_STATIC=1``) has no kernel to move a slider for, and a widget's own output lives in
widget state that only a JavaScript widget manager can show. So there :func:`interact`
calls the function once, at each control's starting value (a slider's ``value``, a list's
first entry, as ``ipywidgets`` reads them), and says which controls JupyterLab would offer.

    >>> import os
    >>> os.environ["NFCOURSE_STATIC"] = "1"
    >>> def square(x=2.0, kind="a"):
    ...     print(kind, x * x)
    >>> _ = interact(square, x=(0.0, 4.0), kind=["b", "c"])  # doctest: +ELLIPSIS
    <IPython.core.display.Markdown object>
    b 4.0
    >>> del os.environ["NFCOURSE_STATIC"]
"""

from __future__ import annotations

import os

import ipywidgets
from IPython.display import Markdown, display

__all__ = ["interact", "static"]


def static() -> bool:
    """True when cells run for a static page (``NFCOURSE_STATIC=1``), not for a person."""
    return os.environ.get("NFCOURSE_STATIC", "").strip() not in ("", "0")


def interact(function=None, /, **controls):
    """``ipywidgets.interact(function, **controls)``, as a call or a decorator; on a static
    page, the function's output at the controls' starting values."""
    if function is None:
        return lambda f: interact(f, **controls)
    if not static():
        return ipywidgets.interact(function, **controls)
    values = {name: ipywidgets.interactive.widget_from_abbrev(control).value
              for name, control in controls.items()}
    shown = ", ".join(f"{name} = {value!r}" for name, value in values.items())
    display(Markdown(f"*Interactive in JupyterLab (sliders for {', '.join(values)}); "
                     f"shown here at {shown}.*"))
    function(**values)
    return function
