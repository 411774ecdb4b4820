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


Grouping = tuple[th.Tensor | None, th.Tensor | None]


def group_by_member(members: th.Tensor, num_members: int) -> Grouping | None:
    """If every member index in ``[0, num_members)`` occurs equally often, return the stable sort
    permutation that groups rows by member and its inverse (``(None, None)`` when the rows are
    already grouped, e.g. one env per task in order); otherwise ``None``.

    Grouped rows can be evaluated as ``(num_members, rows_per_member, ...)`` against the weights
    as they are, instead of gathering a private copy of the weights for every row.
    """
    cached = _last_grouping.get(num_members)
    if (
        cached is not None
        and cached[0].device == members.device
        and cached[0].shape == members.shape
        and th.equal(cached[0], members)
    ):
        return cached[1]  # a VecEnv's task layout rarely changes: skip the sort every step
    result = _group_by_member(members, num_members)
    _last_grouping[num_members] = (members.clone(), result)
    return result


_last_grouping: dict[int, tuple[th.Tensor, Grouping | None]] = {}


def _group_by_member(members: th.Tensor, num_members: int) -> Grouping | None:
    n = members.shape[0]
    if n % num_members != 0:
        return None
    counts = th.bincount(members, minlength=num_members)
    if counts.shape[0] != num_members or not bool((counts == n // num_members).all()):
        return None
    perm = th.argsort(members, stable=True)
    if th.equal(perm, th.arange(n, device=perm.device)):
        return None, None
    return perm, th.argsort(perm)
