"""``python -m sb3_qmp.enjoy``: rl-zoo3's ``enjoy`` with this package's algorithms registered.

Takes exactly rl-zoo3's arguments, e.g.::

    python -m sb3_qmp.enjoy --algo qmp --env MazeNavigation-v0 -f logs/ --no-render -n 2000

With one env (the default ``--n-envs 1``) the saved ``vec_env_wrapper`` cycles through the tasks,
one per episode.
"""

from __future__ import annotations


def main() -> None:
    """Register the algorithms in rl-zoo3, then run ``rl_zoo3.enjoy.enjoy()`` on ``sys.argv``."""
    from sb3_qmp.zoo import register_zoo

    register_zoo()
    from rl_zoo3.enjoy import enjoy

    enjoy()


if __name__ == "__main__":
    main()
