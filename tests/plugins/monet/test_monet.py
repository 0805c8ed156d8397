"""MONET (thesis chapter 2) pinned down on tiny inputs."""
import math

import numpy as np
import pytest
import torch

from aubench import ConfigError, DatasetSpec, Fold, ProtocolSpec, hookimpl
from aubench.testing import toy_stats
from aubench_monet.heads import MONETHead, order_matrices, sample_orders
from aubench_monet.losses import MONETLoss
from aubench_monet.model import MultiTaskNet
from aubench_monet.toy import toy_labels

AUS3 = (1, 2, 3)


def net(**kw):
    torch.manual_seed(0)
    cfg = dict(head="monet", input_dim=2, hidden=8, n_orders=6, warmup=0)
    cfg.update(kw)
    return MultiTaskNet(AUS3, toy_stats(AUS3), **cfg)


def test_orders_are_distinct_permutations_and_soft_orders_bistochastic():
    orders = sample_orders(5, 20, seed=3)
    assert len({tuple(o) for o in orders.tolist()}) == 20
    assert all(sorted(o) == list(range(5)) for o in orders.tolist())
    assert len(sample_orders(3, 100)) == math.factorial(3)
    head = MONETHead(8, 5, hidden=8, n_orders=20)
    with torch.no_grad():
        head.order_logits.copy_(torch.randn(20))
    omega = head.soft_order()
    assert torch.allclose(omega.sum(0), torch.ones(5)) and torch.allclose(omega.sum(1), torch.ones(5))
    assert (order_matrices(orders).sum(1) == 1).all()


def test_vectorised_loss_equals_a_direct_computation_of_eq_2_27():
    model = net()
    model.train()
    x, y = torch.randn(4, 2), torch.tensor([[1.0, 0, 1], [0, 0, 1], [1, 1, 0], [0, 1, 0]])
    mask = torch.ones_like(y, dtype=torch.bool)
    with torch.no_grad():
        model.head.order_logits.copy_(torch.tensor([0.5, -1.0, 0.2, 0.0, 1.0, -0.3]))
    batch = {"x": x, "labels": y, "mask": mask}
    out = model(batch)
    loss, _ = MONETLoss()(out, batch, toy_stats(AUS3))
    head, h0 = model.head, model.head.init(model.encoder(x))
    pi = torch.softmax(head.order_logits, 0)
    direct = 0.0
    for i in range(4):
        mix = 0.0
        for m, order in enumerate(head.orders.tolist()):
            h, prev_y, prev_t, logp = h0[i:i + 1], 0.0, -1, 0.0
            for task in order:
                inp = torch.zeros(1, 4)
                inp[0, 0] = prev_y
                if prev_t >= 0:
                    inp[0, 1 + prev_t] = 1.0
                h = head.cells[task](inp, h)
                p = torch.sigmoid(head.outs[task](h))[0, 0]
                logp = logp + (torch.log(p) if y[i, task] == 1 else torch.log(1 - p))
                prev_y, prev_t = float(y[i, task]), task
            mix = mix + pi[m] * torch.exp(logp)
        direct = direct - torch.log(mix) / 4
    assert loss.item() == pytest.approx(direct.item(), rel=1e-4)


def test_order_dropout_keeps_exactly_k_orders_and_inference_uses_the_softmax():
    model = net(n_orders=6, keep=4)
    model.train()
    batch = {"x": torch.randn(16, 2), "labels": (torch.rand(16, 3) > 0.5).float(),
             "mask": torch.ones(16, 3, dtype=torch.bool)}
    out = model(batch)
    assert (out["order_active"].sum(1) == 4).all()
    pi_tilde = out["order_log_pi"].exp()
    assert torch.allclose(pi_tilde.sum(1), torch.ones(16)) and (pi_tilde[~out["order_active"]] == 0).all()
    u = model.head.order_logits.detach()
    p_km = 4 / 6  # eq. 2.35: every exp(u_m) scaled by its presence probability, which cancels
    scaled = p_km * u.exp() / (p_km * u.exp()).sum()
    assert torch.allclose(model.head.pi(), scaled)


def test_order_logits_do_not_move_during_warm_up(registry, runs):
    seen = {}
    original = MultiTaskNet.on_epoch_start

    def spy(self, epoch):
        seen[epoch] = self.head.order_logits.detach().clone()
        original(self, epoch)

    MultiTaskNet.on_epoch_start = spy
    try:
        toy_cell(registry, runs, "monet-toy", ["epochs=5", "model.n_orders=6", "model.keep=null", "model.warmup=3"])
    finally:
        MultiTaskNet.on_epoch_start = original
    assert all((seen[e] == 0).all() for e in (0, 1, 2, 3))  # frozen through epochs 0-2
    assert (seen[4] != 0).any()  # moving once the warm-up is over


def test_masked_labels_do_not_change_the_loss():
    model = net()
    model.train()
    torch.manual_seed(1)
    x, y = torch.randn(8, 2), (torch.rand(8, 3) > 0.5).float()
    mask = torch.rand(8, 3) > 0.3
    flipped = torch.where(mask, y, 1 - y)
    a = MONETLoss()(model({"x": x, "labels": y, "mask": mask}), {"labels": y, "mask": mask}, toy_stats(AUS3))[0]
    b = MONETLoss()(model({"x": x, "labels": flipped, "mask": mask}), {"labels": flipped, "mask": mask}, toy_stats(AUS3))[0]
    assert a.item() == pytest.approx(b.item(), rel=1e-6)


def test_toy_labels_follow_the_prose():
    x = np.array([-0.9, -0.6, -0.1, 0.1, 0.4, 0.9])
    y = toy_labels(x, 3)
    assert y[:, 0].tolist() == [1, 1, 1, 0, 0, 0]  # task 1: left of 0
    assert y[:, 1].tolist() == [1, 1, 0, 1, 1, 0]  # task 2: left half of [-1, 0) and of [0, 1)
    assert y[:, 2].tolist() == [1, 0, 0, 1, 0, 0]  # task 3: left half of each quarter
    assert all((toy_labels(np.linspace(-1, 1, 1000), 4)[:, t].mean() - 0.5) < 0.01 for t in range(4))


class Toy3:
    """The toy dataset with three tasks, registered like any dataset plugin would."""

    @hookimpl
    def aubench_register_datasets(self):
        return [DatasetSpec(name="toy3", au_set=(1, 2, 3), label_kind="occurrence", prepare="aubench_monet.toy:prepare_toy",
                            fingerprint="aubench_monet.toy:toy_fingerprint", subjects=("train", "val", "test"),
                            synthetic=True, params={"n_tasks": 3, "seed": 0})]

    @hookimpl
    def aubench_register_protocols(self):
        return [ProtocolSpec(name="toy3", version="v1", train_dataset="toy3", test_dataset="toy3", eval_aus=(1, 2, 3),
                             folds=(Fold("test", ("test",), ("train",)),), metric="accuracy")]


def toy_cell(registry, runs, protocol, overrides, seed=0):
    from aubench.cells import plan_cells
    from aubench.engine import run_cell

    cell = plan_cells(registry, "monet", protocol, seeds=[seed], overrides=["preset=toy", *overrides], runs_dir=runs)[0]
    return run_cell(cell, registry, progress=False)


def test_monet_recovers_the_identity_order_on_the_toy_with_three_tasks(runs):
    from conftest import make_registry

    reg = make_registry(("toy3", Toy3()))
    rec = toy_cell(reg, runs, "toy3", ["epochs=60", "optim.lr=3e-3", "model.n_orders=6", "model.keep=5",
                                       "model.warmup=10"])
    assert rec.model_extras["top_orders"][0]["order"] == [1, 2, 3], rec.model_extras["top_orders"]
    assert rec.per_au["1"]["accuracy"] > 90


def test_soft_order_is_saved_with_the_record():
    extras = net().record_extras()
    omega = np.array(extras["soft_order"])
    assert omega.shape == (3, 3) and np.allclose(omega.sum(0), 1) and len(extras["top_orders"]) == 5


def test_monet_cell_records_its_soft_order_and_draws_it(registry, runs):
    from conftest import FAST

    from aubench.cells import plan_cells, run_cells
    from aubench.cli import main

    cell = plan_cells(registry, "monet", "tiny-3fold", folds=["1"], overrides=FAST, runs_dir=runs)[0]
    rec = run_cells([cell], registry, progress=False, echo=lambda *a: None)[0].record
    omega = np.array(rec.model_extras["soft_order"])
    assert omega.shape == (12, 12) and np.allclose(omega.sum(1), 1, atol=1e-5)
    png = cell.run_dir / "soft_order.png"
    assert png.read_bytes()[:4] == b"\x89PNG"  # drawn when the cell finished
    png.unlink()
    assert main(["plot", "order", str(cell.run_dir)]) == 0 and png.read_bytes()[:4] == b"\x89PNG"


def test_shared_prefix_unroll_equals_unrolling_each_order():
    torch.manual_seed(1)
    head = MONETHead(8, 4, hidden=8, n_orders=24)
    h0, y = torch.randn(5, 8), (torch.rand(5, 4) < 0.5).float()
    shared = head._unroll_prefixes(h0, y)
    rows = head._unroll(h0.repeat_interleave(24, 0), head.orders.repeat(5, 1), y.repeat_interleave(24, 0))
    assert head._prefix_nodes == 4 + 12 + 24 + 24
    assert torch.allclose(shared, rows.view(5, 24, 4), atol=1e-6)


def test_both_unrolls_run_under_bf16_autocast_and_stay_near_float32():
    """On CUDA the engine trains under bf16 autocast: the cell steps return bfloat16 while the logits
    are gathered in float32 (a scatter of mixed dtypes failed on the first GPU run)."""
    torch.manual_seed(1)
    head = MONETHead(8, 4, hidden=8, n_orders=24)
    h0, y = torch.randn(5, 8), (torch.rand(5, 4) < 0.5).float()
    ref = head._unroll_prefixes(h0, y)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        h0 = h0.bfloat16()  # what the encoder's Linear gives under autocast
        shared = head._unroll_prefixes(h0, y)
        rows = head._unroll(h0.repeat_interleave(24, 0), head.orders.repeat(5, 1), y.repeat_interleave(24, 0))
    assert shared.dtype == rows.dtype == torch.float32
    assert torch.allclose(shared, rows.view(5, 24, 4), atol=0.05) and torch.allclose(shared, ref, atol=0.05)


@pytest.mark.parametrize("task_input", [True, False])
def test_packing_rows_by_order_equals_packing_them_by_task(task_input):
    """The two packings of MONET's cell steps compute the same logits, gradients and predictions (the
    inference draws included); ``auto`` packs by order at the smoke sizes (M = 16 orders of T = 12, k = 8)
    and by task for the thesis' M = 512."""
    import copy

    torch.manual_seed(3)
    head = MONETHead(16, 12, hidden=16, n_orders=16, keep=8, task_input=task_input)
    head._prefix_nodes = 10 ** 9  # unroll every active order (the path both packings serve)
    h0, y = torch.randn(32, 16), (torch.rand(32, 12) < 0.4).float()
    mask = torch.rand(32, 12) > 0.2
    got = {}
    for layout in ("task", "order"):
        hd = copy.deepcopy(head)
        hd.layout = layout
        x = h0.clone().requires_grad_(True)
        logits = hd(x, y, mask)["order_logits"]
        (logits * torch.linspace(-1, 1, 12)).sum().backward()
        hd.eval()
        sampled = hd.predict(h0)
        hd.feedback = "mean"
        got[layout] = (logits.detach(), x.grad, hd.cells[5].weight_hh.grad, hd.cells[5].weight_ih.grad,
                       hd.outs[7].bias.grad, hd.predict(h0), sampled)
    for a, b in zip(got["task"], got["order"]):
        assert torch.allclose(a, b, atol=1e-5)
    assert torch.equal(got["task"][-1], got["order"][-1])  # the same Bernoulli draws, row for row
    ids = torch.randint(0, 16, (256,))
    assert head._order_packing_pays(ids)
    assert not MONETHead(16, 12, hidden=16, n_orders=512, keep=128)._order_packing_pays(torch.randint(0, 512, (2048,)))
    with torch.autocast("cpu", dtype=torch.bfloat16):  # the GPU's bf16 autocast: float32 logits, near float32
        bf = head._unroll_by_order(h0.bfloat16()[ids % 32], ids, y[ids % 32])
    assert bf.dtype == torch.float32
    assert torch.allclose(bf, head._unroll_by_order(h0[ids % 32], ids, y[ids % 32]), atol=0.05)


@pytest.mark.parametrize("method", ["monet", "monet-mrnn", "monet-vmns"])
def test_each_head_passes_the_model_checks_with_its_smoke_recipe_under_autocast_too(method, registry):
    from omegaconf import OmegaConf

    from aubench.config import compose
    from aubench.testing import check_model

    item = OmegaConf.to_container(compose(method, ["preset=smoke"], registry=registry).model, resolve=True)
    check_model(item.pop("name"), registry, **item)  # the contract, then bf16 autocast and channels_last


def test_batched_cell_step_equals_each_tasks_gru_cell():
    torch.manual_seed(2)
    head = MONETHead(8, 5, hidden=8, n_orders=10)
    h, task, x = torch.randn(30, 8), torch.randint(0, 5, (30,)), torch.randn(30, head.in_dim)
    new_h, logit = head._step(h, task, x)
    for i, t in enumerate(task.tolist()):
        ref = head.cells[t](x[i:i + 1], h[i:i + 1])
        assert torch.allclose(new_h[i], ref[0], atol=1e-6)
        assert torch.allclose(logit[i], head.outs[t](ref)[0, 0], atol=1e-6)


def test_teacher_dropout_hides_that_fraction_of_fed_back_labels():
    head = MONETHead(8, 4, hidden=8, n_orders=4)
    y = (torch.rand(2000, 4) < 0.5).float()
    mask = torch.ones_like(y, dtype=torch.bool)
    mask[0, 0] = False
    assert torch.equal(head._teacher(y, torch.ones_like(mask)), y)
    assert head._teacher(y, mask)[0, 0] == 0.5
    head.teacher_dropout = 0.3
    hidden = (head._teacher(y, mask) == 0.5).float().mean().item()
    assert 0.27 < hidden < 0.33


@pytest.mark.parametrize("mode", ["fixed", "random"])
def test_mrnn_order_is_drawn_once_or_per_batch(mode):
    model = net(head="mrnn", mrnn_order=mode)
    model.train()
    batch = {"x": torch.randn(6, 2), "labels": torch.ones(6, 3), "mask": torch.ones(6, 3, dtype=torch.bool)}
    runs = [model(batch)["logits"] for _ in range(6)]
    same = all(torch.equal(runs[0], r) for r in runs[1:])
    assert same == (mode == "fixed")
    with pytest.raises(ConfigError, match="order='sideways'"):
        net(head="mrnn", mrnn_order="sideways")


def test_without_task_input_the_cells_read_the_previous_label_only():
    model = net(task_input=False)
    assert all(c.input_size == 1 for c in model.head.cells)
    model.train()
    batch = {"x": torch.randn(4, 2), "labels": torch.ones(4, 3), "mask": torch.ones(4, 3, dtype=torch.bool)}
    loss, _ = MONETLoss()(model(batch), batch, toy_stats(AUS3))
    assert torch.isfinite(loss)


@pytest.mark.parametrize("table,rows", [("2.2", ["VMNC", "VMNS", "MRNN", "MONET", "Oracle"]),
                                        ("2.1", ["hard selection", "MONET + warm-up + order dropout"])])
def test_toy_reproduction_runs_harness_cells_and_writes_our_numbers_beside_the_thesis(registry, runs, table, rows):
    from aubench.leaderboard import write_leaderboard
    from aubench_monet.toy import run_table, table_variants

    results = run_table(table, runs=1, runs_dir=runs, epochs=2, progress=False)
    assert list(results) == list(table_variants(table, epochs=2)) and all(len(r) == 1 for r in results.values())
    from aubench_monet.toy import render_table

    text = render_table(table, results, {"runs": 1, "epochs": 2, "keep": 100, "grid": [], "warmup": 0})
    thesis = {t.source.split(" (")[0]: t for _, t in registry.references if t.protocol == "monet-toy@v1"}
    ref = thesis[f"Tallec thesis, Table {table}"]
    for name in rows:
        line = next(ln for ln in text.splitlines() if ln.startswith(f"| {name} |"))
        assert f"{ref.rows[name]['avg']:.1f}" in line
    if table == "2.2":
        found = sum(r.model_extras["top_orders"][0]["order"] == [1, 2, 3, 4, 5] for r in results["MONET"])
        assert f"MONET finds the identity order in {found}/1 runs." in text
    # the cells are ordinary records: the leaderboard scores the toy protocol by accuracy beside the thesis
    board = write_leaderboard(runs, runs / "LEADERBOARD.md", registry).read_text()
    section = board[board.index("## monet-toy@v1"):]
    section = section[:section.index("\n## ", 5)] if "\n## " in section[5:] else section
    assert "avg accuracy" in section and ref.source in section and "*all positive*" not in section


def test_warmup_is_chosen_on_validation_and_a_rerun_trains_nothing(registry, runs, capsys):
    from aubench_monet.toy import reproduce

    text = reproduce("warmup", runs=1, runs_dir=runs, epochs=10, progress=False, grid=(0, 50))
    assert "| n = 0 |" in text and "| n = 50 |" in text and "for the warm-up rows of Table 2.1 (n > 0): n = 50" in text
    assert all("monet-toy-val@v1" in str(p) for p in runs.rglob("record.json"))
    stamps = {p: p.stat().st_mtime_ns for p in runs.rglob("record.json")}
    capsys.readouterr()
    assert reproduce("warmup", runs=1, runs_dir=runs, epochs=10, progress=False, grid=(0, 50)) == text
    assert capsys.readouterr().err.count("skip  monet") == 2
    assert {p: p.stat().st_mtime_ns for p in runs.rglob("record.json")} == stamps


def test_paper_presets_carry_the_thesis_settings_for_bp4d_and_disfa(registry):
    from aubench.config import compose

    bp4d = compose("monet", registry=registry, dataset="bp4d")
    assert (bp4d.model.n_orders, bp4d.model.keep, bp4d.model.warmup, bp4d.model.order_lr) == (512, 128, 5, 5e-3)
    assert (bp4d.optim.lr, bp4d.optim.weight_decay, bp4d.sched.gamma, bp4d.batch_size) == (1e-4, 1e-4, 0.99, 16)
    assert bp4d.loss.dice_weight == 0.5 and bp4d.model.teacher_dropout == 0
    assert bp4d.loss.dice_form == "literal" and bp4d.model.task_input is False and not bp4d.augment  # eq. 2.39-2.40,
    assert compose("monet-mrnn", registry=registry, dataset="bp4d").model.shared_readout is True  # 2.25, §2.3.2
    from aubench import ConfigError

    with pytest.raises(ConfigError, match="Inception-ResNet-v1 trained on VGGFace2"):
        compose("monet", registry=registry, dataset="disfa")  # the thesis' DISFA encoder must be named
    disfa = compose("monet", ["model.pretrained=true"], registry=registry, dataset="disfa")
    assert disfa.preset == "paper-disfa"  # preset=auto picks the DISFA settings
    assert compose("monet", registry=registry, dataset="monet-toy").preset == "toy"
    assert (disfa.optim.lr, disfa.sched.gamma, disfa.batch_size, disfa.epochs) == (5e-4, 0.96, 64, 30)
    assert disfa.model.n_orders == 512 and disfa.optim.weight_decay == 1e-4
    smoke = compose("monet", registry=registry)
    assert smoke.loss.dice_form == "batch" and smoke.model.task_input is True


def test_literal_dice_equals_a_direct_unvectorised_eq_2_39_2_40_inside_eq_2_27():
    import math

    from aubench.testing import toy_stats
    from aubench_monet.losses import MONETLoss

    g = torch.Generator().manual_seed(0)
    B, M, T, lam, eps = 3, 4, 5, 0.5, 1.0
    logits = torch.randn(B, M, T, generator=g)
    log_pi = torch.log_softmax(torch.randn(B, M, generator=g), 1)
    y = (torch.rand(B, T, generator=g) < 0.4).float()
    mask = torch.rand(B, T, generator=g) > 0.2
    stats = toy_stats()
    w = stats.jaanet_weights()
    got, _ = MONETLoss(weighted=True, dice_weight=lam, dice_form="literal")(
        {"order_logits": logits, "order_log_pi": log_pi, "logits": logits[:, 0]}, {"labels": y, "mask": mask}, stats)
    total = 0.0
    for i in range(B):
        mixture = 0.0
        for m in range(M):
            loss_m = 0.0
            for t in range(T):
                if not mask[i, t]:
                    continue
                p, yt = 1 / (1 + math.exp(-float(logits[i, m, t]))), float(y[i, t])
                bce = -(yt * math.log(p) + (1 - yt) * math.log(1 - p))
                dice = 1 - (2 * yt * p + eps) / (yt * yt + p * p + eps)
                loss_m += w[t] * bce + lam * w[t] * dice
            mixture += math.exp(float(log_pi[i, m])) * math.exp(-loss_m)
        total += -math.log(mixture)
    assert float(got) == pytest.approx(total / B, rel=1e-5)


def test_mrnn_shares_its_read_out_across_tasks_when_asked():
    shared, own = net(head="mrnn", shared_readout=True), net(head="mrnn")
    assert shared.head.out.out_features == 1 and own.head.out.out_features == len(AUS3)


@pytest.mark.parametrize("head", ["monet", "mrnn"])
def test_the_recipes_teacher_dropout_reaches_the_recurrent_head(head):
    assert net(head=head, teacher_dropout=0.3).head.teacher_dropout == 0.3
    assert net(head=head).head.teacher_dropout == 0.0


def test_the_toy_dataset_plugin_holds_the_reproductions_draws(registry, tmp_path, monkeypatch):
    from aubench.data.loader import FrameBatches
    from aubench.data.prepared import ensure_prepared
    from aubench_monet.toy import toy_split

    monkeypatch.setenv("AUBENCH_HOME", str(tmp_path))
    spec = registry.get("dataset", "monet-toy")
    ds = ensure_prepared(spec, progress=False)
    assert ds.frames is None and ds.features.shape == (1000, 2) and ds.subjects == ["test", "train", "val"]
    y, mask = ds.labels(spec.au_set)
    for name, (x, labels) in zip(("train", "val", "test"), toy_split(5, 0)):
        rows = ds.rows_for([name])
        assert np.array_equal(ds.features[rows], x) and np.array_equal(y[rows], labels) and mask[rows].all()
    batch = FrameBatches(ds, ds.rows_for(["test"]), y, mask)[[0, 1, 2]]
    assert "image" not in batch and batch["x"].dtype == torch.float32 and batch["x"].shape == (3, 2)
    created = ds.meta["created"]
    assert ensure_prepared(spec, progress=False).meta["created"] == created  # cached, not generated again


def test_the_toy_protocol_trains_monet_and_records_accuracy_and_refuses_image_models(registry, runs, tmp_path,
                                                                                    monkeypatch):
    from aubench.cells import plan_cells
    from aubench.engine import run_cell
    from aubench.errors import ConfigError
    from aubench_monet.toy import toy_split

    monkeypatch.setenv("AUBENCH_HOME", str(tmp_path))
    cell = plan_cells(registry, "monet", "monet-toy", overrides=["preset=toy", "epochs=2", "model.n_orders=6",
                                                                  "model.keep=4"], runs_dir=runs)[0]
    rec = run_cell(cell, registry, progress=False)
    assert rec.n_train_frames == 500 and rec.n_test_frames == 250
    probs = np.load(cell.run_dir / "predictions.npz")["probs"]
    yte = toy_split(5, 0)[2][1]
    acc = ((probs >= 0.5) == (yte > 0.5)).mean(0) * 100
    assert np.allclose([rec.per_au[str(t)]["accuracy"] for t in range(1, 6)], acc)
    image_cell = plan_cells(registry, "vmnc-bce", "monet-toy", runs_dir=runs)[0]
    with pytest.raises(ConfigError, match="monet-toy holds feature vectors.*preset=toy"):
        run_cell(image_cell, registry, progress=False)


def _records(accuracies):
    from types import SimpleNamespace

    return [SimpleNamespace(aus=[1], per_au={"1": {"accuracy": a}}) for a in accuracies]


def test_warmup_choice_and_the_whole_chain_use_validation(registry, runs, capsys):
    from aubench.cli import main
    from aubench_monet.toy import choose_warmup

    assert choose_warmup({"n = 0": _records([95.0]), "n = 10": _records([92.9]), "n = 25": _records([88.9]),
                          "n = 50": _records([91.5])}) == (0, 10)
    assert choose_warmup({"n = 0": _records([90.0]), "n = 10": _records([80.0]), "n = 50": _records([97.0, 95.0])}) == (
        50, 50)
    args = ["monet-toy", "--table", "all", "--runs", "1", "--warmup-runs", "1", "--epochs", "2", "--grid", "0,50",
            "--jobs", "1", "--no-progress", "--runs-dir", str(runs)]
    assert main(args) == 0
    out = capsys.readouterr().out
    chosen = out[out.index("Chosen on validation: n = ") + 26:].split(";")[0]
    assert f"Table 2.2\n\nToy dataset (thesis §2.5.1), T = 5, 1 runs x 2 epochs, warm-up n = {chosen}," in out
    assert "thesis Table 2.1\n\nToy dataset (thesis §2.5.1), T = 5, 1 runs x 2 epochs, warm-up n = 50," in out


def test_encoder_read_out_trains_beside_the_head_and_never_predicts():
    """model.aux_head + loss.aux_weight (the smoke recipe's stand-in for a pretrained encoder): the
    read-out's BCE, summed over AUs like eq. 2.27's likelihood, is added in training only."""
    model = net(aux_head=True)
    x = torch.randn(8, 2)
    y = (torch.rand(8, 3) < 0.5).float()
    batch = {"x": x, "labels": y, "mask": torch.ones(8, 3, dtype=torch.bool)}
    model.train()
    out = model(batch)
    assert out["aux_logits"].shape == (8, 3)
    stats = toy_stats(AUS3)
    base, _ = MONETLoss(dice_form="batch")(out, batch, stats)
    total, terms = MONETLoss(dice_form="batch", aux_weight=0.5)(out, batch, stats)
    aux = torch.nn.functional.binary_cross_entropy_with_logits(out["aux_logits"], y) * 3
    assert torch.allclose(total, base + 0.5 * aux) and terms["aux"] == pytest.approx(float(aux))
    model.eval()
    assert "aux_logits" not in model(batch)
    assert net().aux is None


def test_inference_feedback_modes():
    """model.feedback: "hidden" feeds 0.5 (what teacher dropout feeds in training), "mean" the probability
    (no draws), "sample" Bernoulli draws (Alg. 1-2)."""
    x = torch.randn(4, 2)
    order = sample_orders(3, 1, seed=0).expand(4, -1)
    runs = {}
    for feedback in ("sample", "mean", "hidden"):
        head = net(feedback=feedback).eval().head
        h0 = head.init(net().encoder(x))
        with torch.no_grad():
            runs[feedback] = [head._unroll(h0, order, None) for _ in range(2)]
            if feedback == "hidden":
                assert torch.allclose(runs[feedback][0], head._unroll(h0, order, torch.full((4, 3), 0.5)))
    assert torch.equal(*runs["mean"]) and torch.equal(*runs["hidden"])
    with pytest.raises(ConfigError, match="model.feedback"):
        net(feedback="greedy")
