"""nfcourse: reference implementations for the course *Variational Inference with
Normalizing Flows*.

The notebooks in ``solutions/`` and ``curriculum/`` import from here; nothing in the
notebooks re-implements what lives in this package.

Layers (imports only point down):

- ``data``, ``targets``                          what we fit
- ``flows``                                      bijections with log-determinants
- ``vi``, ``models``                             inference and models
- ``train``, ``evaluate``, ``plotting``, ``checks``  loops, estimators, pictures, feedback
"""

from nfcourse.config import FAST, pick
from nfcourse.utils import get_device, progress, seed_everything

__all__ = ["FAST", "pick", "get_device", "progress", "seed_everything"]
__version__ = "0.1.0"
