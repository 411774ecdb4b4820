"""``python -m sb3_qmp.train``: rl-zoo3's ``train`` with this package's algorithms and configs registered.

Takes exactly rl-zoo3's arguments, e.g.::

    python -m sb3_qmp.train --algo qmp --env MazeNavigation-v0 -n 20000
    python -m sb3_qmp.train --algo qmp --env MazeNavigation-v0 -optimize --n-trials 20 \\
        --storage sqlite:///qmp.db --study-name maze

Default hyperparameters come from ``sb3_qmp/hyperparams/<algo>.yml`` (``-conf`` overrides them).
"""

from __future__ import annotations


def main() -> None:
    """Register the algorithms in rl-zoo3, then run ``rl_zoo3.train.train()`` on ``sys.argv``."""
    from sb3_qmp.zoo import register_zoo

    register_zoo()
    from rl_zoo3.train import train

    train()


if __name__ == "__main__":
    main()
