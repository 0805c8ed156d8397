"""Multi-task heads of Tallec thesis chapter 2 on top of a shared encoder f_w(x) = h0.

* :class:`VMNCHead` — vanilla multi-task network, common head: one linear layer to T outputs.
* :class:`VMNSHead` — vanilla multi-task network, separate heads: 2-3 dense layers per task.
* :class:`MRNNHead` — one shared GRU cell predicting the tasks in sequence (one arbitrary order),
  teacher-forced on the ground truth in training, Monte-Carlo sampled at inference (Alg. 1).
* :class:`MONETHead` — one GRU cell per task, M orders, soft order Ω = Σ π_m M_σm with π = softmax(u)
  (eq. 2.20-2.21), mixture likelihood (eq. 2.27), order dropout keeping k of M orders per example
  (eq. 2.34-2.35), warm-up of the order logits (their optimiser starts at epoch n, Fig. 2.4), and
  inference by sampling R orders from π and L Bernoulli trajectories each (Alg. 2, eq. 2.36).

Choices where the thesis is silent (documented, and options where useful):

* the recurrent input at a step is the previous task's label together with a one-hot of *which* task
  it was (eq. 2.25 only writes y^{σ(t-1)}; without the task identity a cell cannot tell which label
  it receives under different orders). ``task_input=False`` gives eq. 2.25 literally;
* unknown (masked) labels are fed back as 0.5 (no information) and excluded from every order's
  likelihood; ``teacher_dropout`` (an aubench option, 0 in the thesis recipes) also feeds a random
  fraction of the known labels as 0.5 in training, so that cells trained on weak, from-scratch
  encoders do not lean on fed-back labels they will only see sampled at inference;
* MRNN reads out through one linear unit shared by every task with ``shared_readout`` (§2.3.2: "the
  weights of the predictors are shared across tasks"; the ``paper`` and ``toy`` presets), or one per
  task, and by default keeps one seeded random order for training and inference (§2.6.1);
  ``order="random"`` resamples it.

All heads return per-task logits in training (teacher forced) and probabilities in evaluation.
MONET's cells run as batched matmuls over one of two packings, whichever pads less: rows grouped by
the task of the step (any number of orders), or rows grouped by their order, which keeps one packing
for the whole unroll (few orders, e.g. the smoke preset's M = 16); under teacher forcing, orders that
share a prefix share its computation (the prefix tree) when that needs fewer cell steps.
"""
from __future__ import annotations

import contextlib
import itertools
import math
from collections.abc import Iterator
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from aubench import ConfigError

__all__ = ["VMNCHead", "VMNSHead", "MRNNHead", "MONETHead", "sample_orders", "order_matrices"]


def sample_orders(n_tasks: int, n_orders: int, seed: int = 0, include_identity: bool = False) -> torch.Tensor:
    """M distinct permutations of range(T) as a LongTensor [M, T] (all T! when M >= T!), seeded."""
    total = math.factorial(n_tasks)
    if n_orders >= total:
        return torch.tensor(list(itertools.permutations(range(n_tasks))), dtype=torch.long)
    g = torch.Generator().manual_seed(seed)
    seen: set[tuple[int, ...]] = set()
    if include_identity:
        seen.add(tuple(range(n_tasks)))
    while len(seen) < n_orders:
        seen.add(tuple(torch.randperm(n_tasks, generator=g).tolist()))
    orders = sorted(seen)
    return torch.tensor(orders, dtype=torch.long)


def order_matrices(orders: torch.Tensor) -> torch.Tensor:
    """M_σ of eq. 2.17: [M, T, T] with (M_σ)_{i,j} = 1 iff task j is predicted at timestep i."""
    return F.one_hot(orders, orders.shape[1]).float()


class VMNCHead(nn.Module):
    def __init__(self, in_dim: int, n_tasks: int):
        super().__init__()
        self.out = nn.Linear(in_dim, n_tasks)

    def forward(self, h0: torch.Tensor, labels: torch.Tensor | None = None, mask: torch.Tensor | None = None) -> dict:
        return {"logits": self.out(h0)}


class VMNSHead(nn.Module):
    def __init__(self, in_dim: int, n_tasks: int, hidden: int = 64, layers: int = 2):
        super().__init__()
        def head() -> nn.Sequential:
            mods: list[nn.Module] = []
            d = in_dim
            for _ in range(layers - 1):
                mods += [nn.Linear(d, hidden), nn.ReLU()]
                d = hidden
            return nn.Sequential(*mods, nn.Linear(d, 1))
        self.heads = nn.ModuleList(head() for _ in range(n_tasks))

    @property
    def out_biases(self) -> list[torch.Tensor]:
        return [h[-1].bias for h in self.heads]

    def forward(self, h0: torch.Tensor, labels: torch.Tensor | None = None, mask: torch.Tensor | None = None) -> dict:
        return {"logits": torch.cat([h(h0) for h in self.heads], 1)}


def _float32_at_least(t: torch.Tensor) -> torch.dtype:
    """The dtype logits are gathered in: float32, or float64 for float64 inputs. Under bf16 autocast the
    cell steps return bfloat16 while the loss wants float32, and scatter needs one dtype on both sides."""
    return torch.promote_types(t.dtype, torch.float32)


class _Recurrent(nn.Module):
    """Shared machinery: a recurrent step over a batch of (example, order) rows."""

    def __init__(self, in_dim: int, n_tasks: int, hidden: int, task_input: bool = True, teacher_dropout: float = 0.0):
        super().__init__()
        self.n_tasks, self.hidden, self.task_input = n_tasks, hidden, bool(task_input)
        self.init = nn.Linear(in_dim, hidden) if in_dim != hidden else nn.Identity()
        self.in_dim = 1 + (n_tasks if task_input else 0)  # previous label [+ which task it belongs to]
        self.teacher_dropout = float(teacher_dropout)
        self.feedback = "sample"  # at inference: "sample" (Alg. 1-2), "mean" (the probability) or "hidden" (0.5)

    def _seed_inference(self, seed: int) -> None:
        self._infer_seed = int(seed) + 7919
        self.infer_gen = torch.Generator().manual_seed(self._infer_seed)

    def train(self, mode: bool = True) -> _Recurrent:
        """Entering evaluation restarts the inference draws (Alg. 1-2's samples) from their seed, so a
        prediction depends on the weights only, not on how much randomness training used: a reloaded
        checkpoint predicts exactly what the trained model did."""
        if not mode:
            self.infer_gen.manual_seed(self._infer_seed)
        return super().train(mode)

    def _inputs(self, prev_y: torch.Tensor, prev_task: torch.Tensor) -> torch.Tensor:
        if not self.task_input:
            return prev_y.unsqueeze(-1)
        onehot = F.one_hot(prev_task.clamp_min(0), self.n_tasks).to(prev_y) * (prev_task >= 0).unsqueeze(-1).to(prev_y)
        return torch.cat([prev_y.unsqueeze(-1), onehot], -1)

    def _teacher(self, labels: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        """Labels fed back in training: unknown (masked) ones, and a ``teacher_dropout`` fraction of the
        known ones (an aubench option, 0 in the thesis recipes), are fed as 0.5, "no information"."""
        hide = torch.zeros_like(labels, dtype=torch.bool) if mask is None else ~mask
        if self.teacher_dropout > 0:
            hide = hide | (torch.rand(labels.shape, generator=self.gen) < self.teacher_dropout).to(labels.device)
        return torch.where(hide, torch.full_like(labels, 0.5), labels)

    def _step(self, h: torch.Tensor, task: torch.Tensor, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError

    def _unroll(self, h0: torch.Tensor, order: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
        """Logits [R, T] in *task* order for rows with orders [R, T]: teacher forcing with ``labels``
        (eq. 2.25), otherwise each step feeds back a Bernoulli sample of its prediction (Alg. 1-2)."""
        R = h0.shape[0]
        h, prev_y = h0, torch.zeros(R, device=h0.device)
        prev_task = torch.full((R,), -1, dtype=torch.long, device=h0.device)
        logits = torch.zeros(R, self.n_tasks, device=h0.device, dtype=_float32_at_least(h0))
        for t in range(self.n_tasks):
            task = order[:, t]
            h, o = self._step(h, task, self._inputs(prev_y, prev_task))
            logits = logits.scatter(1, task[:, None], o[:, None].to(logits.dtype))
            if labels is not None:
                prev_y = labels.gather(1, task[:, None]).squeeze(1)
            elif self.feedback == "sample":
                draw = torch.rand(o.shape, generator=self.infer_gen).to(o.device)  # a CPU stream on any device
                prev_y = (draw < torch.sigmoid(o.detach().float())).to(o.dtype)
            elif self.feedback == "mean":
                prev_y = torch.sigmoid(o.detach().float()).to(o.dtype)
            else:  # "hidden": fed back as "no information", as teacher_dropout hides labels in training
                prev_y = torch.full_like(o, 0.5)
            prev_task = task
        return logits


class MRNNHead(_Recurrent):
    """A single GRU cell shared by every task; one output layer per task (Alg. 1 at inference).

    ``order="fixed"`` (default) draws one random order at construction (seeded) and keeps it "once and
    for all" (thesis §2.6.1; eq. 2.9: "an arbitrary order"); ``order="random"`` draws a new order
    per batch in training and per trajectory at inference, the other reading of §2.5.2.
    """

    def __init__(self, in_dim: int, n_tasks: int, hidden: int = 64, samples: int = 20, seed: int = 0,
                 task_input: bool = True, order: str = "fixed", teacher_dropout: float = 0.0,
                 shared_readout: bool = False):
        super().__init__(in_dim, n_tasks, hidden, task_input, teacher_dropout)
        if order not in ("fixed", "random"):
            raise ConfigError(f"MRNN order={order!r}; use 'fixed' (one order drawn once) or 'random' (per batch)")
        self.cell = nn.GRUCell(self.in_dim + n_tasks, hidden)
        # §2.3.2: "the weights of the predictors are shared across tasks" (one read-out unit); per-task
        # read-outs (one unit per task, chosen by the task being predicted) are the option.
        self.shared_readout = bool(shared_readout)
        self.out = nn.Linear(hidden, 1 if shared_readout else n_tasks)
        self.samples, self.order_mode = samples, order
        self.gen = torch.Generator().manual_seed(seed)
        self._seed_inference(seed)
        self.register_buffer("fixed_order", torch.randperm(n_tasks, generator=self.gen))

    def _orders(self, rows: int, device: Any) -> torch.Tensor:
        if self.order_mode == "fixed":
            return self.fixed_order.to(device).expand(rows, -1)
        if self.training:
            return torch.randperm(self.n_tasks, generator=self.gen).to(device).expand(rows, -1)
        return torch.rand(rows, self.n_tasks, generator=self.infer_gen).argsort(1).to(device)  # one order per row

    def _step(self, h: torch.Tensor, task: torch.Tensor, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The shared cell, told which task it predicts; the output layer of that task."""
        h = self.cell(torch.cat([x, F.one_hot(task, self.n_tasks).to(x)], -1), h)
        out = self.out(h)
        return h, out.squeeze(1) if self.shared_readout else out.gather(1, task[:, None]).squeeze(1)

    def forward(self, h0: torch.Tensor, labels: torch.Tensor | None = None, mask: torch.Tensor | None = None) -> dict:
        h0 = self.init(h0)
        B = h0.shape[0]
        if self.training and labels is not None:
            return {"logits": self._unroll(h0, self._orders(B, h0.device), self._teacher(labels, mask))}
        L = self.samples
        logits = self._unroll(h0.repeat_interleave(L, 0), self._orders(B * L, h0.device), None)
        return {"probs": torch.sigmoid(logits).view(B, L, -1).mean(1)}


class MONETHead(_Recurrent):
    """One GRU cell per task; M orders mixed by π = softmax(u). Vectorised over orders and samples."""

    def __init__(self, in_dim: int, n_tasks: int, hidden: int = 64, n_orders: int = 120, keep: int | None = None,
                 infer_orders: int = 20, infer_samples: int = 1, selection: str = "soft", order_seed: int = 0,
                 orders: list[list[int]] | None = None, task_input: bool = True, teacher_dropout: float = 0.0):
        super().__init__(in_dim, n_tasks, hidden, task_input, teacher_dropout)
        self.cells = nn.ModuleList(nn.GRUCell(self.in_dim, hidden) for _ in range(n_tasks))
        self.outs = nn.ModuleList(nn.Linear(hidden, 1) for _ in range(n_tasks))
        fixed = torch.tensor(orders, dtype=torch.long) if orders is not None else sample_orders(n_tasks, n_orders, order_seed)
        self.register_buffer("orders", fixed)
        M = fixed.shape[0]
        self.order_logits = nn.Parameter(torch.zeros(M))  # u of eq. 2.21
        self.keep = M if keep is None else min(int(keep), M)
        self.infer_orders, self.infer_samples = int(infer_orders), int(infer_samples)
        if selection not in ("soft", "hard"):
            raise ConfigError(f"selection={selection!r}; use 'soft' (MONET) or 'hard' (sample one order, [80])")
        self.selection = selection
        self.register_buffer("hard_choice", torch.tensor(-1))
        self.register_buffer("order_nll_sum", torch.zeros(M))
        self.register_buffer("order_nll_count", torch.zeros(M))
        self.gen = torch.Generator().manual_seed(order_seed + 1)
        self._seed_inference(order_seed + 1)
        self._stacked_params: tuple[torch.Tensor, ...] | None = None
        self.layout = "auto"  # rows packed per "task" of each step or per "order" (auto: whichever pads less)
        self._build_prefix_tree()

    @property
    def out_biases(self) -> list[torch.Tensor]:
        return [o.bias for o in self.outs]

    @property
    def n_orders(self) -> int:
        return self.orders.shape[0]

    def pi(self) -> torch.Tensor:
        """π (eq. 2.21; at inference eq. 2.35 reduces to the same softmax)."""
        if self.hard_choice >= 0:
            return F.one_hot(self.hard_choice, self.n_orders).float().to(self.order_logits)
        return self.order_logits.softmax(0)

    def soft_order(self) -> torch.Tensor:
        """Ω = Σ_m π_m M_σm (eq. 2.20): [T timesteps, T tasks], bistochastic."""
        return torch.einsum("m,mij->ij", self.pi(), order_matrices(self.orders).to(self.order_logits))

    def _stacked(self) -> tuple[torch.Tensor, ...]:
        """The T cells' and read-outs' parameters stacked along a leading task axis."""
        c, o = self.cells, self.outs
        return (torch.stack([m.weight_ih for m in c]).transpose(1, 2), torch.stack([m.weight_hh for m in c]).transpose(1, 2),
                torch.stack([m.bias_ih for m in c]), torch.stack([m.bias_hh for m in c]),
                torch.cat([m.weight for m in o]), torch.cat([m.bias for m in o]))

    def _step(self, h: torch.Tensor, task: torch.Tensor, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Run, for every row, the GRU cell of its task (``nn.GRUCell`` equations) and its read-out.

        Rows are packed into a [T, S, ·] block, S the largest number of rows sharing a task, so the T
        cells run as two batched matmuls: no Python loop over tasks or orders.
        """
        w_ih, w_hh, b_ih, b_hh, w_out, b_out = self._stacked_params or self._stacked()
        T, R = self.n_tasks, h.shape[0]
        counts = torch.bincount(task, minlength=T)
        S = int(counts.max())
        by_task = torch.argsort(task, stable=True)
        rank = torch.empty_like(task)
        rank[by_task] = torch.arange(R, device=h.device) - (counts.cumsum(0) - counts)[task[by_task]]
        slot = task * S + rank
        rows = torch.full((T * S,), R, dtype=torch.long, device=h.device)  # slot -> row; R is a zero row
        rows[slot] = torch.arange(R, device=h.device)

        def packed(v: torch.Tensor) -> torch.Tensor:
            return torch.cat([v, v.new_zeros(1, v.shape[1])]).index_select(0, rows).view(T, S, -1)

        # index_select everywhere: its backward (index_add) is far cheaper than advanced indexing's
        gi = torch.bmm(packed(x), w_ih.to(x.dtype)).view(T * S, -1).index_select(0, slot) + b_ih.index_select(0, task)
        gh = torch.bmm(packed(h), w_hh.to(h.dtype)).view(T * S, -1).index_select(0, slot) + b_hh.index_select(0, task)
        i_r, i_z, i_n = gi.chunk(3, 1)
        h_r, h_z, h_n = gh.chunk(3, 1)
        r, z = torch.sigmoid(i_r + h_r), torch.sigmoid(i_z + h_z)
        new_h = (1 - z) * torch.tanh(i_n + r * h_n) + z * h
        return new_h, (new_h * w_out.index_select(0, task)).sum(-1) + b_out.index_select(0, task)

    @contextlib.contextmanager
    def _cells_stacked(self) -> Iterator[None]:
        """Stack the cells' parameters once per unroll, not once per step."""
        self._stacked_params = self._stacked()
        try:
            yield
        finally:
            self._stacked_params = None

    def _unroll(self, h0: torch.Tensor, order: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
        with self._cells_stacked():
            return super()._unroll(h0, order, labels)

    def _unroll_orders(self, h0: torch.Tensor, ids: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
        """Logits [R, T] in task order for rows following orders ``self.orders[ids]``: in the packing by
        order when it pads no more than the packing by task (``layout``: ``auto``, ``order`` or ``task``)."""
        if self.layout == "order" or (self.layout == "auto" and self._order_packing_pays(ids)):
            return self._unroll_by_order(h0, ids, labels)
        return self._unroll(h0, self.orders[ids], labels)

    def _order_packing_pays(self, ids: torch.Tensor) -> bool:
        """Rows padded per order (the largest order's count, once) against rows padded per task (the
        largest task's count at each step), and few enough orders that their gathered weights stay small."""
        counts = torch.bincount(ids, minlength=self.n_orders)
        present = int((counts > 0).sum())
        if present > 4 * self.n_tasks:
            return False
        by_order = present * int(counts.max())
        tasks = self.orders.index_select(0, ids)  # [R, T]: the task of each row at each step
        per_step = torch.zeros(self.n_tasks, self.n_tasks, dtype=torch.long, device=ids.device).scatter_add_(
            0, tasks, torch.ones_like(tasks))  # [task, step] counts
        by_task = self.n_tasks * float(per_step.max(0).values.float().mean())
        return by_order <= by_task

    def _unroll_by_order(self, h0: torch.Tensor, ids: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
        """``_unroll`` with rows packed once into a [P orders, S rows] block, S the largest order's count.

        Every row of a block runs the same task at every step, so a step is one batched matmul (h W_hh
        of the block's task) and no repacking; the input term x W_ih of eq. 2.25's x = [y, onehot(task)]
        is read from W_ih's rows instead of multiplied. Same equations as :meth:`_step` (``nn.GRUCell``).
        """
        R, T, dev = h0.shape[0], self.n_tasks, h0.device
        present, inv = torch.unique(ids, return_inverse=True)
        P = len(present)
        counts = torch.bincount(inv, minlength=P)
        S = int(counts.max())
        by_order = torch.argsort(inv, stable=True)
        rank = torch.empty_like(inv)
        rank[by_order] = torch.arange(R, device=dev) - (counts.cumsum(0) - counts)[inv[by_order]]
        slot = inv * S + rank  # row -> its place in the block
        rows = torch.full((P * S,), R, dtype=torch.long, device=dev)  # place -> row; R is a zero row
        rows[slot] = torch.arange(R, device=dev)

        def packed(v: torch.Tensor) -> torch.Tensor:
            return torch.cat([v, v.new_zeros(1, *v.shape[1:])]).index_select(0, rows).view(P, S, *v.shape[1:])

        w_ih, w_hh, b_ih, b_hh, w_out, b_out = self._stacked()  # w_ih [T, 1 (+ T), 3H], w_hh [T, H, 3H]
        orders = self.orders.index_select(0, present)  # [P, T]: each block's task at each step
        flat = orders.reshape(-1)

        def per_step(w: torch.Tensor) -> torch.Tensor:  # the block's task's parameters at every step: [P, T, ...]
            return w.index_select(0, flat).view(P, T, *w.shape[1:])

        wi = per_step(w_ih)  # the input term, gathered once for the whole unroll
        gi_y = wi[:, :, 0].unsqueeze(2)  # [P, T, 1, 3H]: times the fed-back label
        gi_c = per_step(b_ih)
        if self.task_input:  # the one-hot of the previous task selects one row of W_ih (none at step 0)
            prev = torch.cat([orders.new_zeros(P, 1), 1 + orders[:, :-1]], 1)
            picked = wi.gather(2, prev.view(P, T, 1, 1).expand(P, T, 1, wi.shape[-1])).squeeze(2)
            gi_c = gi_c + picked * (torch.arange(T, device=dev) > 0).view(1, T, 1).to(picked.dtype)
        # the small per-step tensors as one view per step (unbind: its backward stacks the steps' gradients
        # once, where slicing would zero-fill a whole [P, T, ...] gradient at every step); W_hh is gathered
        # step by step, which moves a T-th of the memory at a time
        gi_y, gi_c, b_hh = gi_y.unbind(1), gi_c.unsqueeze(2).unbind(1), per_step(b_hh).unsqueeze(2).unbind(1)
        w_out, b_out = per_step(w_out).unsqueeze(2).unbind(1), per_step(b_out).unsqueeze(2).unbind(1)
        h = packed(h0)
        teacher = packed(labels) if labels is not None else None
        prev_y = h.new_zeros(P, S)
        steps = []
        for t in range(T):
            gi = prev_y.unsqueeze(-1) * gi_y[t].to(prev_y.dtype) + gi_c[t]
            gh = torch.baddbmm(b_hh[t].to(h.dtype), h, w_hh.index_select(0, orders[:, t]).to(h.dtype))
            i_r, i_z, i_n = gi.chunk(3, -1)
            h_r, h_z, h_n = gh.chunk(3, -1)
            r, z = torch.sigmoid(i_r + h_r), torch.sigmoid(i_z + h_z)
            h = (1 - z) * torch.tanh(i_n + r * h_n) + z * h
            o = (h * w_out[t]).sum(-1) + b_out[t]
            steps.append(o)
            task = orders[:, t]
            if teacher is not None:
                prev_y = teacher.gather(2, task.view(P, 1, 1).expand(P, S, 1)).squeeze(2)
            elif self.feedback == "sample":  # drawn in row order, as _unroll draws them
                draw = torch.rand(R, generator=self.infer_gen).to(dev)
                prev_y = (packed(draw.unsqueeze(1)).squeeze(2) < torch.sigmoid(o.detach().float())).to(o.dtype)
            elif self.feedback == "mean":
                prev_y = torch.sigmoid(o.detach().float()).to(o.dtype)
            else:
                prev_y = torch.full_like(o, 0.5)
        by_step = torch.stack(steps, -1).to(_float32_at_least(h0))  # [P, S, step]
        by_task = by_step.new_zeros(P, S, T).scatter(2, orders.unsqueeze(1).expand(P, S, T), by_step)
        return by_task.view(P * S, T).index_select(0, slot)

    def _build_prefix_tree(self) -> None:
        """Under teacher forcing an order's hidden state after t steps depends only on its first t
        tasks, so orders sharing a prefix share that computation: depth t holds each distinct prefix
        once (all T! orders of T = 5: 325 cell steps instead of 600)."""
        orders = self.orders.tolist()
        self._tree: list[tuple[torch.Tensor, ...]] = []
        index: dict[tuple[int, ...], int] = {(): 0}
        for t in range(self.n_tasks):
            nodes = list(dict.fromkeys(tuple(o[:t + 1]) for o in orders))
            parent = torch.tensor([index[p[:-1]] for p in nodes])
            task = torch.tensor([p[-1] for p in nodes])
            prev = torch.tensor([p[-2] if t else -1 for p in nodes])
            index = {p: i for i, p in enumerate(nodes)}
            of_order = torch.tensor([index[tuple(o[:t + 1])] for o in orders])
            self._tree.append((parent, task, prev, of_order))
        self._prefix_nodes = sum(len(level[0]) for level in self._tree)
        self._tree_on: dict[torch.device, list[tuple[torch.Tensor, ...]]] = {}

    def _tree_for(self, device: torch.device) -> list[tuple[torch.Tensor, ...]]:
        """The prefix tree's index tensors on ``device``, copied there once."""
        if device not in self._tree_on:
            self._tree_on[device] = [tuple(v.to(device) for v in level) for level in self._tree]
        return self._tree_on[device]

    def _unroll_prefixes(self, h0: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
        """Teacher-forced logits [B, M, T] (task order) of every order, one cell step per prefix."""
        B, M, dev = h0.shape[0], self.n_orders, h0.device
        h = h0.unsqueeze(1)
        out = torch.zeros(B, M, self.n_tasks, device=dev, dtype=_float32_at_least(h0))
        with self._cells_stacked():
            for t, (parent, task, prev, of_order) in enumerate(self._tree_for(dev)):
                n = len(task)
                h_parent = h.index_select(1, parent).reshape(B * n, -1)
                prev_y = (teacher.index_select(1, prev.clamp_min(0)) * (prev >= 0)).reshape(-1)  # y^0 = 0
                h, o = self._step(h_parent, task.repeat(B), self._inputs(prev_y, prev.repeat(B)))
                h, o = h.view(B, n, -1), o.view(B, n)
                cols = self.orders[:, t].to(dev).expand(B, M).unsqueeze(-1)
                out = out.scatter(2, cols, o.index_select(1, of_order).unsqueeze(-1).to(out.dtype))
        return out

    def forward(self, h0: torch.Tensor, labels: torch.Tensor | None = None, mask: torch.Tensor | None = None) -> dict:
        h0 = self.init(h0)
        B, M, T = h0.shape[0], self.n_orders, self.n_tasks
        if self.training and labels is not None:
            mask = torch.ones_like(labels, dtype=torch.bool) if mask is None else mask
            active = self._active_orders(B, h0.device)  # [B, M] bool, exactly `keep` per example (eq. 2.34)
            rows_b, rows_m = active.nonzero(as_tuple=True)
            teacher = self._teacher(labels, mask)
            if self._prefix_nodes <= len(rows_b) // B * T:  # fewer cell steps than unrolling each active order
                out_logits = self._unroll_prefixes(h0, teacher) * active.unsqueeze(-1)
            else:
                task_logits = self._unroll_orders(h0[rows_b], rows_m, teacher[rows_b])  # [R, T], task order
                out_logits = torch.zeros(B, M, T, device=h0.device, dtype=task_logits.dtype)
                out_logits[rows_b, rows_m] = task_logits
            logits_log_pi = torch.full((B, M), float("-inf"), device=h0.device)
            logits_log_pi[rows_b, rows_m] = 0.0
            log_pi = (self.order_logits if self.hard_choice < 0 else torch.log(self.pi() + 1e-30)) + logits_log_pi
            log_pi = log_pi - torch.logsumexp(log_pi, 1, keepdim=True)  # π̃ of eq. 2.34 per example
            if self.selection == "hard" and self.hard_choice < 0:  # exploration phase of [80]
                y = torch.where(mask, labels, torch.zeros_like(labels)).unsqueeze(1)
                nll = (F.binary_cross_entropy_with_logits(out_logits, y.expand_as(out_logits), reduction="none")
                       * mask.unsqueeze(1)).sum(-1)
                self.record_order_nll(nll, active)
            pi_mean = torch.where(active, log_pi.exp(), torch.zeros_like(log_pi))
            mixed = (pi_mean.detach().unsqueeze(-1) * torch.sigmoid(out_logits)).sum(1)
            return {"order_logits": out_logits, "order_log_pi": log_pi, "order_active": active,
                    "probs_train": mixed, "logits": torch.logit(mixed.clamp(1e-6, 1 - 1e-6))}
        return {"probs": self.predict(h0)}

    def _active_orders(self, B: int, device: Any) -> torch.Tensor:
        M = self.n_orders
        if self.hard_choice >= 0:
            return F.one_hot(self.hard_choice, M).bool().expand(B, M).to(device)
        if self.keep >= M:
            return torch.ones(B, M, dtype=torch.bool, device=device)
        noise = torch.rand(B, M, generator=self.gen).to(device)
        idx = noise.topk(self.keep, dim=1).indices
        return torch.zeros(B, M, dtype=torch.bool, device=device).scatter(1, idx, True)

    @torch.no_grad()
    def predict(self, h0: torch.Tensor) -> torch.Tensor:
        """Alg. 2 / eq. 2.36: R orders from π, L Bernoulli trajectories each, probabilities averaged."""
        B, R, L = h0.shape[0], self.infer_orders, self.infer_samples
        choice = torch.multinomial(self.pi().detach().cpu().expand(B, -1), R, replacement=True,
                                   generator=self.infer_gen).to(h0.device)  # [B, R]
        ids = choice.reshape(-1).repeat_interleave(L, 0)  # [B*R*L]: each row's order
        probs = torch.sigmoid(self._unroll_orders(h0.repeat_interleave(R * L, 0), ids, None))
        return probs.view(B, R * L, -1).mean(1)

    def record_order_nll(self, nll: torch.Tensor, active: torch.Tensor) -> None:
        """Accumulate each order's training NLL (for hard selection after warm-up, [80])."""
        with torch.no_grad():
            self.order_nll_sum += torch.where(active, nll, torch.zeros_like(nll)).sum(0)
            self.order_nll_count += active.sum(0)

    def choose_hard_order(self) -> int:
        """[80]'s hard selection: sample one order with probability ∝ its performance (1 / mean NLL)."""
        mean_nll = self.order_nll_sum / self.order_nll_count.clamp_min(1)
        perf = 1.0 / mean_nll.clamp_min(1e-6)
        choice = int(torch.multinomial((perf / perf.sum()).cpu(), 1, generator=self.gen))
        self.hard_choice.fill_(choice)
        return choice
