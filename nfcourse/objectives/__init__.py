"""The objectives: what a model is trained on, and the estimates made with it.

- :mod:`~nfcourse.objectives.base`: the interface the training loop calls
  (:class:`Objective`) and R&M's annealing schedule;
- :mod:`~nfcourse.objectives.vae`: the ELBO, the IWAE bound and the importance-sampled
  log-likelihood of a latent variable model (Sections 4 and 6);
- :mod:`~nfcourse.objectives.density`: a flow's likelihood of data, dequantization and bits
  per dimension (Section 5);
- :mod:`~nfcourse.objectives.free_energy`: a flow fitted to an unnormalised density
  (Section 6, R&M Fig. 3).

Everything is importable from here: ``from nfcourse.objectives import elbo, FreeEnergy``.
"""

from nfcourse.objectives.base import Objective, anneal_beta, mean_bound, warmup_steps
from nfcourse.objectives.density import (MaximumLikelihood, bits_per_dim, dequantize,
                                         discrete_nll)
from nfcourse.objectives.free_energy import FreeEnergy, free_energy, free_energy_terms
from nfcourse.objectives.vae import (Bound, BoundFn, bernoulli_log_likelihood, elbo,
                                     elbo_closed_form, elbo_of_parts, iwae, iwae_bound,
                                     kl_std_normal, log_marginal_is, log_weights,
                                     reconstruction, refine_posterior, reparameterize)

__all__ = ["Objective", "anneal_beta", "warmup_steps", "mean_bound", "MaximumLikelihood", "bits_per_dim",
           "dequantize", "discrete_nll", "FreeEnergy", "free_energy", "free_energy_terms",
           "Bound", "BoundFn", "bernoulli_log_likelihood", "elbo", "elbo_closed_form",
           "elbo_of_parts", "iwae", "iwae_bound", "kl_std_normal", "log_marginal_is",
           "log_weights", "reconstruction", "refine_posterior", "reparameterize"]
