"""Self-checks for the student notebooks.

Each implementation exercise is followed by a cell such as::

    from nfcourse.checks import bayes as check
    check.linear_gaussian_log_density(log_density)

A check calls the student's function on fresh inputs and compares the answer with an
independent computation. It prints one line when everything holds, and otherwise raises
:class:`SelfCheckError` with a message in the student's terms: which property failed,
expected versus got, and, for the mistakes people usually make, what the mistake
probably is. An unfinished stub's ``NotImplementedError`` passes through untouched.

One module per section; the shared machinery lives in :mod:`nfcourse.checks.core`, and
the mistakes that more than one section looks for (a wrong KL to N(0, I)) in
:mod:`nfcourse.checks.mistakes`.

Each check run also appends its outcome (✔, ✘ or ○, and the time) to the progress record
beside the student's notebooks (:mod:`nfcourse.checks.record`), which
``python3 tasks.py progress`` reads.

Once a check has passed, later cells run the student's own function:
``yours_or_reference(elbo, objectives.elbo_closed_form)`` returns it (and the reference
before that), and says which.
"""

from nfcourse.checks.core import SelfCheckError, yours_or_reference

__all__ = ["SelfCheckError", "yours_or_reference"]
