"""MONET head training step (forward + backward), relative to a plain loop over the T task cells.

Three ways to run, for every (example, order) row, the GRU cell of the task at each step:

* ``loop``: for each task, gather its rows, run its ``nn.GRUCell``, scatter back (the reference);
* ``packed``: the head's ``_step`` — rows packed per task, two batched matmuls per step;
* ``by order``: rows packed once per order (``_unroll_by_order``), one batched matmul per step, the
  input term read from W_ih's rows; ``auto`` picks it when it pads no more than ``packed``;
* the head's forward, which also shares the prefix computation of orders under teacher forcing
  when that needs fewer cell steps (the toy's M = T! = 120 orders).

Sizes: the toy reproduction (T = 5, M = 120, batch 64, k = 120 and k = 100) and the SynthAU smoke
preset (T = 12, M = 16, k = 8). One thread, as each toy worker runs.
"""
from __future__ import annotations

import time

import torch

from aubench_monet.heads import MONETHead


def loop_step(head: MONETHead, h: torch.Tensor, task: torch.Tensor, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    new_h, logit = torch.empty_like(h), torch.empty(h.shape[0])
    for j, (cell, out) in enumerate(zip(head.cells, head.outs)):
        rows = (task == j).nonzero(as_tuple=True)[0]
        if len(rows):
            hj = cell(x[rows], h[rows])
            new_h[rows] = hj
            logit[rows] = out(hj).squeeze(-1)
    return new_h, logit


def step_ms(head: MONETHead, T: int, steps: int = 10) -> float:
    h0 = torch.randn(64, 64, requires_grad=True)
    y = (torch.rand(64, T) < 0.4).float()
    mask = torch.ones_like(y, dtype=torch.bool)
    for i in range(steps + 2):
        if i == 2:
            t = time.perf_counter()
        head(h0, y, mask)["order_logits"].sum().backward()
    return (time.perf_counter() - t) / steps * 1000


def main() -> None:
    torch.set_num_threads(1)
    for T, M, k in [(5, 120, 120), (5, 120, 100), (12, 16, 8)]:
        torch.manual_seed(0)
        head = MONETHead(64, T, 64, n_orders=M, keep=k)
        head.train()
        full = step_ms(head, T)
        nodes = head._prefix_nodes
        head._prefix_nodes = 10 ** 9  # never share prefixes: one unroll per active order
        head.layout = "order"
        by_order = step_ms(head, T)
        head.layout = "task"
        packed = step_ms(head, T)
        packed_step = MONETHead._step
        MONETHead._step = loop_step
        try:
            loop = step_ms(head, T)
        finally:
            MONETHead._step = packed_step
        head._prefix_nodes = nodes
        head.layout = "auto"
        print(f"T={T:2d} M={M:3d} k={k:3d}: loop {loop:6.1f} ms | packed {packed:6.1f} ms ({loop / packed:4.1f}x) | "
              f"by order {by_order:6.1f} ms ({loop / by_order:4.1f}x) | "
              f"head forward {full:6.1f} ms ({loop / full:4.1f}x; prefix tree {'on' if nodes <= k * T else 'off'})")


if __name__ == "__main__":
    main()
