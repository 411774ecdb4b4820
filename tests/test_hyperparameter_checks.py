"""Values refused at construction: a ValueError that names the argument, the value and the allowed range."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

from sb3_qmp import QMP, MultiTaskSAC, SharedSAC, make_multitask_vec_env
from sb3_qmp.common.collectors import make_collector
from sb3_qmp.envs.metaworld_door_drawer import task_variations

BAD = [
    (dict(batch_size=0), "batch_size=0 .* integer >= 1"),
    (dict(batch_size=-4), "batch_size=-4"),
    (dict(buffer_size=0), "buffer_size=0 .* integer >= 1"),
    (dict(learning_starts=-1), "learning_starts=-1 .* integer >= 0"),
    (dict(tau=0.0), r"tau=0.0 .* \(0.0, 1.0\]"),
    (dict(tau=1.5), "tau=1.5"),
    (dict(gamma=1.01), r"gamma=1.01 .* \[0.0, 1.0\]"),
    (dict(gamma=float("nan")), "gamma=nan"),
    (dict(ent_coef=-0.1), "ent_coef=-0.1"),
    (dict(ent_coef="fixed"), "ent_coef='fixed'"),
    (dict(gradient_steps=-2), "gradient_steps=-2 .* integer >= -1"),
    (dict(target_update_interval=0), "target_update_interval=0"),
    (dict(learning_rate=0.0), "learning_rate=0.0"),
    (dict(policy_kwargs=dict(net_arch=[64, 0])), r"net_arch'\]=\[64, 0\] .* integers >= 1"),
    (dict(policy_kwargs=dict(net_arch=dict(pi=[64], qf=[0]))), r"\['qf'\]"),
    (dict(policy_kwargs=dict(n_critics=0)), "n_critics'\\]=0"),
    (dict(optimize_memory_usage=True), "optimize_memory_usage=True is not supported"),
]


@pytest.mark.parametrize(("kwargs", "message"), BAD, ids=[str(k) for k, _ in BAD])
def test_bad_hyperparameters_are_refused_at_construction(kwargs: dict, message: str) -> None:
    env = make_multitask_vec_env("MultiGoalPoint-v0", seed=0)
    for cls in (QMP, SharedSAC):
        with pytest.raises(ValueError, match=message):
            cls(env, **kwargs)


def test_defaults_and_sb3_forms_are_accepted() -> None:
    env = make_multitask_vec_env("MultiGoalPoint-v0", seed=0)
    MultiTaskSAC(env, ent_coef="auto_0.5", gradient_steps=-1, optimize_memory_usage=False, learning_rate=lambda _: 1e-3)
    QMP(env, ent_coef=0.0, tau=1.0, gamma=0.0, policy_kwargs=dict(net_arch=dict(pi=[8], qf=[8])))


def test_collector_options_without_effect_or_nan_are_refused() -> None:
    with pytest.raises(ValueError, match="no effect with commit_steps=1"):
        make_collector("qswitch", 4, switch_margin=0.5)
    with pytest.raises(ValueError, match="switch_margin must be a number >= 0"):
        make_collector("qswitch", 4, commit_steps=3, switch_margin=float("nan"))
    make_collector("qswitch", 4, commit_steps=3, switch_margin=0.5)


def test_mixture_episode_start_of_the_wrong_length_is_refused() -> None:
    env = make_multitask_vec_env("MultiGoalPoint-v0", seed=0)
    model = QMP(env, learning_starts=0)
    obs = env.reset()
    mixture = model.mixture_policy(seed=0)
    mixture.predict(obs, episode_start=np.ones(4, dtype=bool))
    with pytest.raises(ValueError, match="episode_start has 3 entries for 4 observation rows"):
        mixture.predict(obs, episode_start=np.ones(3, dtype=bool))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (dict(step_size=0.0), "step_size=0.0"),
        (dict(goal_radius=float("inf")), "goal_radius=inf"),
        (dict(step_size=-1), "step_size=-1"),
    ],
)
def test_point_env_arguments_are_checked(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        gym.make("MultiGoalPoint-v0", **kwargs)


def test_meta_world_variation_seed_must_not_be_negative() -> None:
    with pytest.raises(ValueError, match=r"variation_seed=-1 .* integer >= 0"):
        task_variations(0, variation_seed=-1)


@pytest.mark.parametrize(
    "algo", ["qmp", "separated", "shared", "dnc", "dnc_reg", "qmp_uniform", "qmp_domain", "mtsac_multihead", "qmp_multihead"]
)
def test_named_algorithms_refuse_another_collector(algo: str) -> None:
    """Every named algorithm is defined by its collector (QMP(collector="own") used to be a silent Separated)."""
    from sb3_qmp.registry import get_algo

    cls = get_algo(algo)
    other = "uniform" if cls.default_collector != "uniform" else "own"
    with pytest.raises(ValueError, match=rf"{cls.__name__} always collects with the '{cls.default_collector}' collector"):
        extra = dict(mixture=np.full((4, 4), 0.25)) if algo == "qmp_domain" else {}
        cls(make_multitask_vec_env("MultiGoalPoint-v0", seed=0), collector=other, **extra)
    MultiTaskSAC(make_multitask_vec_env("MultiGoalPoint-v0", seed=0), collector=other)  # the generic class takes any
