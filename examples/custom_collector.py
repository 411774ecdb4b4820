"""A collector of your own, without touching the package: a softmax Q-switch.

For a row of task i, policy j acts with probability softmax_j(Q_i(s, a_j) / temperature) instead of the
argmax: a temperature of 0 would be QMP's switch, a large one QMP-Uniform. Subclass ``Collector``, say
that it needs every policy's proposals, and implement ``_decide``; commitment (``commit_steps``), the
own-policy probability, the selection statistics and the mixture evaluation come with the base class.

    python examples/custom_collector.py --steps 2000
"""

from __future__ import annotations

import argparse
from typing import Any

import torch as th

from sb3_qmp import MultiTaskSAC, make_multitask_vec_env
from sb3_qmp.common.collectors import Collector


class SoftmaxQSwitch(Collector):
    """Policy j acts for a row of task i with probability softmax(Q_i(s, a_j) / temperature)."""

    name = "softmax_qswitch"
    needs_proposals = True  # select() passes every policy's (mean, sampled) proposals to _decide

    def __init__(self, num_tasks: int, temperature: float = 1.0, **kwargs: Any) -> None:
        super().__init__(num_tasks, **kwargs)
        if not temperature > 0:
            raise ValueError(f"temperature must be > 0, got {temperature!r}.")
        self.temperature = float(temperature)

    def _decide(self, policy: Any, features: th.Tensor, tasks: th.Tensor, proposals: Any) -> th.Tensor:
        means, _ = proposals  # (T, N, A): every policy's mean action for every row
        scores = policy.critic.score(features, means.transpose(0, 1), tasks, "q1")  # (N, T): task i's critic
        probs = th.softmax(scores / self.temperature, dim=1)
        return th.multinomial(probs, 1, generator=self._generator(tasks.device)).squeeze(1)


def main(argv: list[str] | None = None) -> MultiTaskSAC:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--output", default="softmax_qswitch.zip")
    args = parser.parse_args(argv)
    env = make_multitask_vec_env("MultiGoalPoint-v0", seed=0)
    model = MultiTaskSAC(env, collector=SoftmaxQSwitch, collector_kwargs=dict(temperature=0.5), learning_starts=400, seed=0)
    model.learn(args.steps)
    model.save(args.output)
    loaded = MultiTaskSAC.load(args.output, env=env)  # the collector class is saved with the model
    print("collector:", type(loaded.collector).__name__, "temperature", loaded.collector.temperature)
    print("who acted for whom (rows: task collecting):")
    print(loaded.selection_matrix().round(2))
    return loaded


if __name__ == "__main__":
    main()
