"""Variational inference before flows: sections 2 and 3 of the course.

- :mod:`nfcourse.vi.kl_fit`      forward vs reverse KL: a Gaussian fitted to a bimodal mixture
- :mod:`nfcourse.vi.mixture`     the Bayesian Gaussian mixture (Blei et al. 2017), its ELBO, CAVI
- :mod:`nfcourse.vi.svi`         natural-gradient SVI (Hoffman et al. 2013) and plain SGD
- :mod:`nfcourse.vi.estimators`  score-function and reparameterisation gradients, control variates
- :mod:`nfcourse.vi.bbvi`        black-box VI for the mixture: Rao-Blackwellization, control
                                 variates

The notebooks ``solutions/02_cavi.py`` and ``solutions/03_bbvi.py`` import from here. The
functions ``svi.svi`` and ``bbvi.bbvi`` are not re-exported: their names are the modules'.
"""

from nfcourse.vi import bbvi, estimators, kl_fit, mixture, svi
from nfcourse.vi.bbvi import bbvi_gradient, exact_gradient
from nfcourse.vi.estimators import (control_variate, cv_coefficient, normal_score,
                                    reparam_samples, score_function_samples, variance_reduction)
from nfcourse.vi.kl_fit import bimodal, fit_gaussian, forward_kl, reverse_kl, reverse_kl_mc
from nfcourse.vi.mixture import (cavi, cavi_restarts, cavi_step, elbo, elbo_ascent,
                                 expected_log_lik, init_params, match_components, simulate,
                                 update_m_s2, update_phi)
from nfcourse.vi.svi import global_elbo, robbins_monro, sgd, svi_step

__all__ = [
    "bbvi", "estimators", "kl_fit", "mixture", "svi",
    "bbvi_gradient", "exact_gradient",
    "control_variate", "cv_coefficient", "normal_score", "reparam_samples",
    "score_function_samples", "variance_reduction",
    "bimodal", "fit_gaussian", "forward_kl", "reverse_kl", "reverse_kl_mc",
    "cavi", "cavi_restarts", "cavi_step", "elbo", "elbo_ascent", "expected_log_lik",
    "init_params", "match_components", "simulate", "update_m_s2", "update_phi",
    "global_elbo", "robbins_monro", "sgd", "svi_step",
]
