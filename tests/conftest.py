"""Shared by every test file.

* The feature cache ($HINGEABL_CACHE) is a fresh temporary folder per test process,
  so no test reads or fills the user's ~/.cache/hingeabl-nb.
* `@pytest.mark.needs("redocred", "minilm", "chromium", "paper")`: a test that needs
  something from outside the repository (tools/resources.py) is skipped with that
  resource's one line when it is missing, and fails with it when $HINGEABL_REQUIRE
  names the resource (CI: a download that did not arrive fails, it does not skip).
* With HINGEABL_EXTRA_LOSS=1 an eighth loss is added to the registry before any test
  module is imported (tests/test_registry.py runs parts of the suite that way): every
  test that iterates `LOSSES` must then pick it up with no other edit.
"""

import functools
import os
import sys
import tempfile
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))
import resources

os.environ.setdefault("HINGEABL_CACHE", tempfile.mkdtemp(prefix="hingeabl-cache-"))


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "needs(*names): resources of tools/resources.py the test needs"
    )


@functools.cache
def _missing(name: str) -> str | None:
    "The resource's skip line if it is missing, else None (looked up once)."
    return None if resources.find(name) else resources.line(name)


def pytest_runtest_setup(item):
    for mark in item.iter_markers("needs"):
        for name in mark.args:
            why = _missing(name)
            if why and name in resources.required():
                pytest.fail(f"required by $HINGEABL_REQUIRE: {why}", pytrace=False)
            if why:
                pytest.skip(why)


EXTRA_LOSS = "SquaredAML"  # the name the extra loss is registered under


def squared_aml_loss(logits, labels, margin=1.0):
    "A loss no paper ran: AML's hinge, squared (eq. (12) with [m - d_r]_+^2)."
    import torch.nn.functional as F

    from hingeabl_nb.losses import loss_inputs
    from hingeabl_nb.sat import distances

    s, y = loss_inputs(logits, labels, "squared_aml_loss")
    return (F.relu(margin - distances(s, y)) ** 2).sum(1).mean()


def squared_aml_ref(logits, labels, margin=1.0):
    "The same with Python loops in float64."
    from hingeabl_nb.sat import d_ref

    total = 0.0
    for s, y in zip(logits.double().tolist(), labels.double().tolist()):
        total += sum(max(0.0, margin - d_ref(s, y, r)) ** 2 for r in range(1, len(s)))
    return total / len(logits)


def extra_loss_spec():
    "The registry entry of the extra loss (a margin option, the TH threshold)."
    from hingeabl_nb.losses import LossSpec

    return LossSpec(EXTRA_LOSS, squared_aml_loss, squared_aml_ref, dict(margin=1.0))


if os.environ.get("HINGEABL_EXTRA_LOSS") == "1":
    from hingeabl_nb.losses import LOSSES

    LOSSES[EXTRA_LOSS] = extra_loss_spec()
