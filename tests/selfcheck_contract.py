"""What every self-check does, whatever its exercise: a test file subclasses
:class:`SelfCheckContract` as ``TestSelfCheckContract`` and names its section, its checks
module and the reference answers."""

from __future__ import annotations

from types import ModuleType

import pytest
import torch

from nfcourse.checks import SelfCheckError


class SelfCheckContract:
    section: str            # "4" for Exercise 4.x
    checks: ModuleType      # nfcourse.checks.<section>
    references: dict        # check name -> a correct answer

    def pytest_generate_tests(self, metafunc):  # pytest calls it for a class's tests too
        if "name" in metafunc.fixturenames:
            metafunc.parametrize("name", list(self.references))

    def test_reference_passes_with_one_line(self, name, capsys):
        getattr(self.checks, name)(self.references[name])
        out = capsys.readouterr().out
        assert out.startswith(f"✔ Exercise {self.section}.") and out.count("\n") == 1, out

    def test_unfinished_stub_is_reported_not_raised(self, name, capsys):
        def stub(*args, **kwargs):
            raise NotImplementedError("Exercise not done yet: replace this line")
        getattr(self.checks, name)(stub)
        out = capsys.readouterr().out
        assert out.startswith(f"○ Exercise {self.section}.") and "not attempted yet" in out, out

    def test_crash_is_reported_with_its_inputs(self, name):
        def crash(*args, **kwargs):
            raise ValueError("boom")
        with pytest.raises(SelfCheckError,
                           match=r"raised ValueError: boom\n  called with: \(tensor"):
            getattr(self.checks, name)(crash)

    def test_checks_do_not_touch_the_global_random_state(self):
        torch.manual_seed(0)
        before = torch.get_rng_state()
        for name, reference in self.references.items():
            getattr(self.checks, name)(reference)
        assert torch.equal(before, torch.get_rng_state())
