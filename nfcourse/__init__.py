"""nfcourse: reference implementations for the course *Variational Inference with
Normalizing Flows*.

The notebooks in ``solutions/`` and ``curriculum/`` import from here; nothing in the
notebooks re-implements what lives in this package.

Layers (imports only point down; ``tests/test_layering.py`` reads every import and fails
on one that points up, or on a module missing from this list):

0. ``config``, ``utils``, ``closed_forms``, ``widgets``: fast mode, devices, progress; the
   log-densities every layer shares; sliders that a static page shows at their start
1. ``data``, ``targets``: what we fit (data sets; the energies U1-U4)
2. ``flows``: bijections with log-determinants, flow distributions
3. ``vi``, ``models``, ``bayes``: inference before flows; the VAE with pluggable posterior,
   prior and likelihood; the Section 1 answers
4. ``objectives``, ``compiled``, ``callbacks``, ``train``, ``checks``, ``plotting``,
   ``results``, ``curriculum`` and ``exercises``: bounds and estimators, one training loop
   for every model, student feedback and its record, the shared pictures, the papers' tables
   beside ours, the notebook builder, the list of exercises read from the notebooks
5. ``__main__``, ``progress_report`` and ``comparison``: the command line, a student's progress
   and the group's, an answer beside the solution's; above it, notebooks, scripts and
   benchmarks
"""

from nfcourse.config import FAST, pick
from nfcourse.utils import Budget, get_device, progress, seed_everything


def compare(number: str):
    """Your answer to Exercise ``number`` beside the solution's, in a notebook:
    ``nfcourse.compare("6.3b")`` (see :func:`nfcourse.comparison.compare`)."""
    from nfcourse.comparison import compare as shown  # on demand: `import nfcourse` stays light

    return shown(number)


__all__ = ["FAST", "Budget", "pick", "get_device", "progress", "seed_everything", "compare"]
__version__ = "0.1.0"
