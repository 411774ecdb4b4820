"""Batched ("ensemble") MLPs: M independent networks evaluated in one batched matmul.

T tasks' actors or critics are held as one set of stacked weights ``(M, in, out)`` instead of
M ``nn.Module`` objects, so a forward pass over all tasks costs one ``baddbmm`` per layer
rather than M Python-level calls. Member ``m`` only ever touches its own slice of the weights,
so gradients (and Adam's element-wise updates) never mix between members.
"""

from __future__ import annotations

import itertools
import math

import torch as th
from torch import nn


class BatchedLinear(nn.Module):
    """M independent linear layers ``y_m = x_m W_m + b_m``.

    :param num_members: number of independent layers M.
    :param in_features: input size.
    :param out_features: output size.
    """

    def __init__(self, num_members: int, in_features: int, out_features: int) -> None:
        super().__init__()
        self.num_members = num_members
        self.in_features = in_features
        self.out_features = out_features
        self.weight = nn.Parameter(th.empty(num_members, in_features, out_features))
        self.bias = nn.Parameter(th.empty(num_members, 1, out_features))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        # Same init as nn.Linear (Kaiming-uniform with a=sqrt(5)), member by member.
        bound = 1.0 / math.sqrt(self.in_features)
        nn.init.uniform_(self.weight, -bound, bound)
        nn.init.uniform_(self.bias, -bound, bound)

    def forward(self, x: th.Tensor, members: th.Tensor | slice | None = None) -> th.Tensor:
        """
        :param x: input of shape ``(M', B, in)``.
        :param members: which member processes each leading slice: ``M'`` indices (gathers a copy
            of their weights), a ``slice`` of members (a view, no copy), or ``None`` for all
            members in order (``M' == M``).
        :return: output of shape ``(M', B, out)``.
        """
        if members is None:
            return th.baddbmm(self.bias, x, self.weight)
        return th.baddbmm(self.bias[members], x, self.weight[members])

    def extra_repr(self) -> str:
        return f"num_members={self.num_members}, in_features={self.in_features}, out_features={self.out_features}"


class BatchedMLP(nn.Module):
    """M independent MLPs with the same architecture.

    :param num_members: number of independent networks M.
    :param in_features: input size.
    :param net_arch: hidden layer sizes.
    :param out_features: output size (``0`` for no output layer: the last hidden layer is the output).
    :param activation_fn: activation class applied after every hidden layer.
    """

    def __init__(
        self,
        num_members: int,
        in_features: int,
        net_arch: list[int],
        out_features: int,
        activation_fn: type[nn.Module] = nn.ReLU,
    ) -> None:
        super().__init__()
        self.num_members = num_members
        sizes = [in_features, *net_arch]
        self.hidden = nn.ModuleList(BatchedLinear(num_members, i, o) for i, o in itertools.pairwise(sizes))
        self.activation = activation_fn()
        self.output = BatchedLinear(num_members, sizes[-1], out_features) if out_features > 0 else None
        self.out_features = out_features if out_features > 0 else sizes[-1]

    def forward(self, x: th.Tensor, members: th.Tensor | slice | None = None) -> th.Tensor:
        """Evaluate member ``members[k]`` (or member ``k``) on ``x[k]``; ``x`` has shape ``(M', B, in)``."""
        for layer in self.hidden:
            x = self.activation(layer(x, members))
        if self.output is not None:
            x = self.output(x, members)
        return x


class MemberLayout:
    """Where every row goes in a member-major ``(num_members, slots, ...)`` layout.

    Rows routed to members by index are packed so that member ``m``'s rows sit in slice ``m`` (in
    their original order, padded with zeros up to the largest member's row count). The packed
    tensor then runs through all members with their weights used in place: one ``baddbmm`` per
    layer and no per-row copy of any weight matrix. When every member has the same number of rows
    and the rows are already in member order (one env per task, the usual collection layout),
    packing and unpacking are plain views.

    :param members: member index of every row ``(N,)``.
    :param num_members: number of members M.
    """

    def __init__(self, members: th.Tensor, num_members: int) -> None:
        n = members.shape[0]
        counts = th.bincount(members, minlength=num_members)
        if counts.shape[0] != num_members:
            raise ValueError(f"Member indices must lie in [0, {num_members}), got max {int(members.max())}.")
        self.num_members = num_members
        self.slots = max(int(counts.max()), 1) if n else 0
        order = th.argsort(members, stable=True)
        self.in_order = bool((counts == self.slots).all()) and th.equal(order, th.arange(n, device=members.device))
        # Slot of every row: its rank among the rows of its member.
        starts = th.cumsum(counts, 0) - counts
        self.slot = th.empty_like(members)
        self.slot[order] = th.arange(n, device=members.device) - starts[members[order]]
        self.member = members
        # Packing pads every member to the largest one: worth it while that at most doubles the rows.
        self.balanced = bool((counts > 0).all()) and num_members * self.slots <= 2 * max(n, 1)
        self._groups: list[tuple[int, th.Tensor]] | None = None
        self._order, self._counts = order, counts

    def groups(self) -> list[tuple[int, th.Tensor]]:
        """``(member, row indices)`` of every member that has rows."""
        if self._groups is None:
            bounds = th.cumsum(self._counts, 0).tolist()
            starts = [0, *bounds[:-1]]
            self._groups = [(m, self._order[start:end]) for m, (start, end) in enumerate(zip(starts, bounds)) if end > start]
        return self._groups

    def pack(self, x: th.Tensor) -> th.Tensor:
        """``(N, ...)`` -> ``(num_members, slots, ...)`` (zero rows where a member has fewer rows)."""
        if self.in_order:
            return x.reshape(self.num_members, self.slots, *x.shape[1:])
        packed = x.new_zeros(self.num_members, self.slots, *x.shape[1:])
        packed[self.member, self.slot] = x
        return packed

    def unpack(self, y: th.Tensor) -> th.Tensor:
        """``(num_members, slots, ...)`` -> ``(N, ...)``: every row's result back in its original place."""
        if self.in_order:
            return y.reshape(-1, *y.shape[2:])
        return y[self.member, self.slot]


def run_rows(net: BatchedMLP, x: th.Tensor, layout: MemberLayout, copies: int = 1) -> th.Tensor:
    """Row ``n`` of ``x`` ``(N, ..., in)`` through member ``c * M + layout.member[n]`` of ``net`` for each ``c <
    copies`` (e.g. the twin critics of a task): ``(copies, N, ..., out)``, at a cost linear in the rows.

    Balanced layouts (every member has rows, in about equal numbers: a VecEnv's collection rows) run all members
    in one packed pass; any other layout (e.g. N rows of one task) runs each member that has rows on its rows
    only, instead of padding every member to the largest one.
    """
    m = layout.num_members
    if layout.balanced:
        packed = layout.pack(x)  # (M, slots, ..., in)
        flat = packed.reshape(m, -1, x.shape[-1])
        if copies > 1:
            flat = flat.repeat(copies, 1, 1)
        y = net(flat, slice(0, copies * m)).view(copies, m, layout.slots, *x.shape[1:-1], -1)
        return th.stack([layout.unpack(y[c]) for c in range(copies)])
    out = x.new_empty(copies, *x.shape[:-1], net.out_features)
    for member, rows in layout.groups():
        part = x[rows].reshape(1, -1, x.shape[-1]).expand(copies, -1, -1)
        index = th.arange(copies, device=x.device) * m + member
        out[:, rows] = net(part, index).view(copies, len(rows), *x.shape[1:-1], -1)
    return out


def member_layout(members: th.Tensor, num_members: int) -> MemberLayout:
    """The :class:`MemberLayout` of ``members``, reused while the members do not change (a VecEnv's
    task layout rarely does: this skips the sort at every collection step)."""
    cached = _last_layout.get(num_members)
    if (
        cached is not None
        and cached[0].device == members.device
        and cached[0].shape == members.shape
        and th.equal(cached[0], members)
    ):
        return cached[1]
    members = members.clone()  # the cache key and the layout must not follow later in-place edits
    layout = MemberLayout(members, num_members)
    _last_layout[num_members] = (members, layout)
    return layout


_last_layout: dict[int, tuple[th.Tensor, MemberLayout]] = {}
