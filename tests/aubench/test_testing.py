"""Every registered model, loss and method passes the conformance suite that plugins can reuse."""
import pytest

from aubench.registry import Registry
from aubench.testing import check_loss, check_method

REG = Registry()


@pytest.mark.parametrize("method", REG.names("method"))
def test_method_smoke_recipe_builds_and_trains_a_step(method):
    check_method(method, REG)


@pytest.mark.parametrize("loss", REG.names("loss"))
def test_loss_conforms(loss):
    check_loss(loss, REG)
