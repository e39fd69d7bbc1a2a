r"""
---
title: Expert parallelism
summary: The experts of a mixture-of-experts layer divided among the processes of a group; tokens travel to their experts' process and back with all-to-all, the counts exchanged first.
---

# Expert parallelism

An MoE layer's parameters are mostly its experts', and a token uses only $k$ of them. So the experts are
divided among $W$ processes (devices), $E / W$ each, while everything else, the router included, is replicated
as in data parallelism: each process routes *its own* tokens. A token whose expert lives on another process is
sent there, computed, and sent back. The exchange is an **all-to-all**: every process sends a (different-sized)
piece of its tokens to every other one.

With $W$ processes, $E_l = E / W$ local experts (process $r$ holds experts $r E_l, \dots, (r+1) E_l - 1$) and $N$
local slots (each token's $k$ choices), one call goes:

1. **Route and sort** locally, exactly as the [single-process layer](/transformers/moe/index.md#MoE): the `[N,
   d_model]` rows sorted by expert, and since the experts of process $r$ are consecutive, the rows for process $r$
   are one contiguous block.
2. **Exchange the counts.** How many rows each process will *receive* is not known to it: only the senders know.
   So first an all-to-all of the `[E]` counts per expert, $E_l$ to each process: afterwards process $r$ knows, for
   every source $s$ and local expert $e$, how many rows are coming, a `[W, E_l]` table.
3. **Dispatch**: `all_to_all_single` of the rows, with the sizes of step 2. The received rows are ordered by source
   process, then by expert.
4. **Compute**: regroup the received rows by local expert (a stable sort) and run the local experts, grouped as in
   the single-process layer; then undo the regrouping.
5. **Combine**: the reverse all-to-all (the sizes swapped) returns each row to the process it came from, in the
   order it left; the usual unsort and weighted sum finish the layer.

The all-to-all is differentiable by the same argument: its gradient is the reverse all-to-all of the output's
gradient, which is what [`AllToAll`](#AllToAll) implements. Every expert's weight gradient accumulates over the
rows of *all* processes that reached it, as if the layer had run on all the tokens on one process; the router's
gradient, like any replicated parameter's, is per-process and summed by the data-parallel all-reduce.

This layer is dropless (a capacity would make the exchange fixed-size, `[W, E_l, C]`, at the price of drops).
On one process it is the plain layer. The tests run it on 2 processes with the gloo backend on the CPU (whose
`all_to_all_single` with uneven splits works in torch 2.13) and compare outputs and gradients with a single
process.
"""
from __future__ import annotations

import torch
import torch.distributed as dist

from labml_nn.transformers.moe import Dispatch, Experts, MoE

__all__ = ["AllToAll", "ExpertParallelMoE"]


# ## A differentiable all-to-all
#
# Forward: process $r$ sends `input_splits[s]` rows of `x` (consecutive, in order of $s$) to each process $s$ and
# receives `output_splits[s]` rows from each. Backward: the gradient of every received row goes back where the row
# came from, the same exchange with the two lists swapped.
class AllToAll(torch.autograd.Function):
    """`all_to_all_single` of rows `[rows, ...]`, with its reverse as its gradient."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, output_splits: list[int], input_splits: list[int], group) -> torch.Tensor:
        ctx.splits, ctx.group = (output_splits, input_splits), group
        out = x.new_empty((sum(output_splits), *x.shape[1:]))
        dist.all_to_all_single(out, x.contiguous(), output_splits, input_splits, group=group)
        return out

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        output_splits, input_splits = ctx.splits
        grad_x = grad.new_empty((sum(input_splits), *grad.shape[1:]))
        dist.all_to_all_single(grad_x, grad.contiguous(), input_splits, output_splits, group=ctx.group)
        return grad_x, None, None, None


# ## The layer
#
# [`MoE`](/transformers/moe/index.md#MoE) with two methods overridden: `build_experts` builds only this process's
# $E_l$ experts, and `run_experts` sends the sorted rows to their experts and brings the results back. `group` is
# the process group (`None`: the default group, or a single process when `torch.distributed` is not initialised).
class ExpertParallelMoE(MoE):
    """`MoE` whose experts are divided among the processes of `group`; the other arguments are `MoE`'s."""

    def __init__(self, d_model: int, d_ff: int, n_experts: int, top_k: int = 2, *, group=None, **options):
        distributed = dist.is_available() and dist.is_initialized()
        # Plain attributes, set before `MoE.__init__` because `build_experts` needs them.
        self.group = group
        self.world_size = dist.get_world_size(group) if distributed else 1
        self.rank = dist.get_rank(group) if distributed else 0
        if n_experts % self.world_size != 0:
            raise ValueError(f"n_experts ({n_experts}) must be divisible by the expert-parallel world size "
                             f"({self.world_size})")
        if options.get("capacity_factor") is not None:
            raise ValueError("expert parallelism here is dropless: capacity_factor must be None")
        self.local_experts = n_experts // self.world_size
        super().__init__(d_model, d_ff, n_experts, top_k, **options)

    # This process's experts, $r E_l \dots (r + 1) E_l - 1$ of the layer.
    def build_experts(self, d_model: int, d_ff: int, n_experts: int, activation: str) -> Experts:
        return Experts(d_model, d_ff, self.local_experts, activation)

    # ### Dispatch, compute, combine
    #
    # `sorted_x` is `[N, d_model]`, this process's slots sorted by (global) expert, and `plan.counts` `[E]` their
    # number per expert.
    def run_experts(self, sorted_x: torch.Tensor, plan: Dispatch) -> torch.Tensor:
        if self.world_size == 1:
            return super().run_experts(sorted_x, plan)
        world, local = self.world_size, self.local_experts
        # **Counts.** `received_counts[s * E_l + e]`: rows process $s$ sends to our local expert $e$, `[W * E_l]`
        received_counts = torch.empty_like(plan.counts)
        dist.all_to_all_single(received_counts, plan.counts, group=self.group)
        # `[W * E_l]` to `[W, E_l]`
        received_counts = received_counts.view(world, local)
        # The sizes of the exchange, on the host (all-to-all needs them there): rows to each process, rows from each
        send_splits = plan.counts.view(world, local).sum(1).tolist()
        receive_splits = received_counts.sum(1).tolist()

        # **Dispatch.** `[N, d_model]` to `[R, d_model]`, $R$ = `sum(receive_splits)`, ordered (source, expert)
        received = AllToAll.apply(sorted_x, receive_splits, send_splits, self.group)

        # **Compute.** Each received row's local expert, `[R]`: the table flattened in (source, expert) order
        expert_of_row = torch.arange(local, device=received.device).repeat(world).repeat_interleave(
            received_counts.flatten())
        # Stable sort by local expert: `[R, d_model]`, ordered (expert, source)
        regroup = expert_of_row.argsort(stable=True)
        out = self.experts.forward_grouped(received[regroup], received_counts.sum(0).tolist())
        # Undo the regrouping: row `regroup[i]` of the received order is row `i` of `out`, `[R, d_model]`
        out = torch.empty_like(out).index_copy_(0, regroup, out)

        # **Combine.** `[R, d_model]` back to `[N, d_model]`, in this process's sorted order
        return AllToAll.apply(out, send_splits, receive_splits, self.group)
