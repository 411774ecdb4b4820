"""``python -m sb3_qmp.train``: rl-zoo3's ``train`` with this package's algorithms and configs registered.

Takes exactly rl-zoo3's arguments, e.g.::

    python -m sb3_qmp.train --algo qmp --env MazeNavigation-v0 -n 20000
    python -m sb3_qmp.train --algo qmp --env MazeNavigation-v0 -optimize --n-trials 20 \\
        --storage sqlite:///qmp.db --study-name maze

Default hyperparameters come from ``sb3_qmp/hyperparams/<algo>.yml`` (``-conf`` overrides them).

On top of rl-zoo3's options: ``--checkpoint-minutes M`` / ``--checkpoint-steps N`` (complete checkpoints
in the run folder) and ``--resume`` (continue the newest run from its newest checkpoint, or start it;
``-n`` is the run's total budget), e.g.::

    python -m sb3_qmp.train --algo qmp --env MazeNavigation-v0 -n 4000000 -f logs/maze --resume

See :mod:`sb3_qmp.zoo.resume`.
"""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> None:
    """Register the algorithms in rl-zoo3, then run ``rl_zoo3.train.train()`` on the command line.

    :param argv: arguments without the program name (``None``: ``sys.argv[1:]``).
    """
    from sb3_qmp.zoo import register_zoo
    from sb3_qmp.zoo.resume import prepare_run

    zoo_argv = prepare_run(list(sys.argv[1:] if argv is None else argv))
    if zoo_argv is None:  # --resume of a run that already finished
        return
    register_zoo()
    from rl_zoo3.train import train

    sys.argv = [sys.argv[0], *zoo_argv]
    train()


if __name__ == "__main__":
    main()
