"""Every registered component passes the conformance suite that plugins reuse, and the suite catches
what it promises to catch."""
import re

import pytest
from conftest import make_registry

from aubench.registry import Registry
from aubench.testing import ConformanceError, check_dataset, check_loss, check_method, check_model, conformance_cases

REG = Registry()


@pytest.mark.parametrize("case", conformance_cases(registry=REG), ids=str)
def test_every_registered_component_conforms(case):
    case.run()


@pytest.mark.parametrize("method", ["vmnc-bce", "fantrans", "monet", "ls-rhls"])
def test_a_method_of_each_family_runs_a_cell_round_trips_its_checkpoint_and_its_au_order_is_checked(method, tmp_path):
    check_method(method, make_registry(), protocol="tiny-3fold", runs_dir=tmp_path)


def test_synthetic_datasets_prepare_a_small_instance(tmp_path):
    reg = make_registry()
    ds = check_dataset("synth-disfa", reg, prepare_params={"subjects": 2, "frames_per_video": 4, "image_size": 32},
                       out_dir=tmp_path)
    assert len(ds.subjects) == 2


class Broken:
    """Components with the mistakes the suite must catch."""

    @staticmethod
    def model_3d(au_set, stats):
        import torch

        class M(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.lin = torch.nn.Linear(3, len(au_set))

            def forward(self, batch):
                return {"logits": self.lin(batch["image"].mean((2, 3)))[..., None]}
        return M()

    @staticmethod
    def loss_bare(**params):
        from aubench import masked_bce

        return lambda outputs, batch, stats: masked_bce(outputs["logits"], batch["labels"], batch["mask"])[0]

    @staticmethod
    def loss_unmasked(**params):
        import torch.nn.functional as F

        def loss(outputs, batch, stats):
            value = F.binary_cross_entropy_with_logits(outputs["logits"], batch["labels"])
            return value, {"bce": float(value)}
        return loss

    @staticmethod
    def loss_naive_log(**params):
        import torch

        def loss(outputs, batch, stats):
            p = torch.sigmoid(outputs["logits"])
            m = batch["mask"].float()
            value = -((batch["labels"] * torch.log(p) + (1 - batch["labels"]) * torch.log(1 - p)) * m).sum() / m.sum()
            return value, {"bce": float(value)}
        return loss


class BrokenPlugin:
    from aubench import hookimpl

    @hookimpl
    def aubench_register_models(self):
        from aubench import ModelSpec
        return [ModelSpec("broken-3d", Broken.model_3d)]

    @hookimpl
    def aubench_register_losses(self):
        from aubench import LossSpec
        return [LossSpec("broken-bare", Broken.loss_bare), LossSpec("broken-unmasked", Broken.loss_unmasked),
                LossSpec("broken-log", Broken.loss_naive_log)]


@pytest.mark.parametrize(("kind", "name", "check"), [
    ("model", "broken-3d", "output shape"),
    ("loss", "broken-bare", "returns (value, terms)"),
    ("loss", "broken-unmasked", "masked labels ignored"),
    ("loss", "broken-log", "saturated scores"),
])
def test_the_suite_names_the_component_the_check_and_the_fix(kind, name, check):
    reg = make_registry(("brokenplugin", BrokenPlugin()))
    expected = re.escape(f"{kind} '{name}' (plugin 'brokenplugin') fails the check '{check}'")
    with pytest.raises(ConformanceError, match=expected):
        (check_model if kind == "model" else check_loss)(name, reg)


class ScorePlugin:
    """A model that returns calibrated scores and a loss that trains through them."""

    from aubench import hookimpl

    @staticmethod
    def model(au_set, stats):
        import torch

        class M(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.lin = torch.nn.Linear(3, len(au_set))

            def forward(self, batch):
                return {"probs": torch.sigmoid(self.lin(batch["image"].mean((2, 3))))}
        return M()

    @staticmethod
    def loss():

        def fn(outputs, batch, stats):
            p = outputs["probs"].clamp(1e-6, 1 - 1e-6)
            y, m = batch["labels"], batch["mask"].float()
            per_au = -(y * p.log() + (1 - y) * (1 - p).log()).mul(m).sum(0) / m.sum(0).clamp_min(1)
            value = per_au[m.sum(0) > 0].mean()
            return value, {"bce": float(value.detach())}
        return fn

    @hookimpl
    def aubench_register_models(self):
        from aubench import ModelSpec
        return [ModelSpec("score-net", ScorePlugin.model)]

    @hookimpl
    def aubench_register_losses(self):
        from aubench import LossSpec
        return [LossSpec("prob-bce", ScorePlugin.loss, reads=("probs",))]


def test_a_score_model_trains_through_probs_and_its_loss_is_checked_through_them():
    reg = make_registry(("scores", ScorePlugin()))
    check_model("score-net", reg)
    check_loss("prob-bce", reg)
