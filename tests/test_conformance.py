"""Every registered model, loss and method passes the conformance suite that plugins can reuse."""
import pytest

from aubench.registry import Registry
from aubench.testing import check_loss, check_method, check_model

REG = Registry()


@pytest.mark.parametrize("method", REG.names("method"))
def test_method_smoke_recipe_builds_and_trains_a_step(method):
    check_method(method, REG)


@pytest.mark.parametrize("loss", REG.names("loss"))
def test_loss_conforms(loss):
    check_loss(loss, REG)


def test_vmnc_conforms_with_a_tiny_backbone():
    model = check_model("vmnc", REG, backbone="test_resnet")
    # eq. (2.38): the head starts at the training prior
    import numpy as np

    from aubench.testing import AUS, toy_stats

    assert np.allclose(model.head.bias.detach().numpy(), toy_stats(AUS).bias_init(), atol=1e-6)
