"""Optuna search spaces of this package's algorithms, in rl-zoo3's sampler/converter format.

Every algorithm samples SAC's knobs; the mixture algorithms add their collector's knobs, DnC its KL
weight. A sampler records the *raw* values as trial parameters (what ``--trial-id`` reloads through
the converter) and returns constructor arguments. Only arguments the algorithm's constructor
accepts are returned, so a search space never breaks an algorithm that lacks a knob.

=====================  ===============================================================================
group                  trial parameters -> constructor arguments
=====================  ===============================================================================
SAC (all algorithms)   ``one_minus_gamma`` -> ``gamma``; ``learning_rate``; ``batch_size_pow`` ->
                       ``batch_size`` (32..256, per task); ``tau``; ``train_freq``; ``gradient_ratio`` ->
                       ``gradient_steps = max(1, round(train_freq * ratio))``; ``net_arch`` (small,
                       medium, big) -> ``policy_kwargs["net_arch"]``
Q-switch               ``score`` (mean, sample), ``critic_reduce`` (q1, min), ``commit_steps`` (1, 5,
(qmp, qmp_multihead)   10, 20), ``own_prob`` [0, 0.9], and only when ``commit_steps > 1``
                       ``switch_margin`` (None, 0.1, 1, 10; ``None`` otherwise) -> ``collector_kwargs``
mixture (qmp_uniform,  ``commit_steps``, ``own_prob`` -> ``collector_kwargs``
qmp_domain)
DnC (dnc, dnc_reg)     ``beta`` (the KL weight) in {1e-4, 1e-3, 1e-2, 1e-1, 1} (the paper's grid)
=====================  ===============================================================================

Sampled ``collector_kwargs`` / ``policy_kwargs`` are merged into the YAML's (so e.g. QMP-Domain keeps
its mixture matrix), see :func:`sb3_qmp.zoo.merge_nested`.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import optuna

from sb3_qmp.registry import get_algo

NET_ARCHS: dict[str, list[int]] = {"small": [64, 64], "medium": [256, 256], "big": [400, 300]}
BATCH_SIZE_POW = (5, 8)
TRAIN_FREQS = [1, 4, 16, 64]
GRADIENT_RATIOS = [0.125, 0.25, 0.5, 1.0]
COMMIT_STEPS = [1, 5, 10, 20]
# Q-value margin that ends a commitment early (None: never); Q scales differ per env, hence decades.
SWITCH_MARGINS: list[float | None] = [None, 0.1, 1.0, 10.0]
OWN_PROB_RANGE = (0.0, 0.9)
DNC_BETAS = [1e-4, 1e-3, 1e-2, 1e-1, 1.0]

SEARCH_GROUPS: dict[str, tuple[str, ...]] = {
    "qmp": ("sac", "qswitch"),
    "separated": ("sac",),
    "shared": ("sac",),
    "dnc": ("sac", "dnc"),
    "dnc_reg": ("sac", "dnc"),
    "qmp_uniform": ("sac", "mixture"),
    "qmp_domain": ("sac", "mixture"),
    "mtsac_multihead": ("sac",),
    "qmp_multihead": ("sac", "qswitch"),
}


def accepted_kwargs(cls: type[Any]) -> set[str]:
    """Names of the keyword arguments ``cls(...)`` accepts, following ``**kwargs`` up the class hierarchy."""
    names: set[str] = set()
    for klass in cls.__mro__:
        init = klass.__dict__.get("__init__")
        if init is None:
            continue
        params = inspect.signature(init).parameters.values()
        names.update(p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY))
        if not any(p.kind is p.VAR_KEYWORD for p in params):
            break
    names.discard("self")
    return names


def _suggest(trial: optuna.Trial, algo: str) -> dict[str, Any]:
    """Draw the raw trial parameters of ``algo``'s search groups."""
    groups = SEARCH_GROUPS.get(algo, ("sac",))
    raw: dict[str, Any] = {
        "one_minus_gamma": trial.suggest_float("one_minus_gamma", 1e-3, 0.05, log=True),
        "learning_rate": trial.suggest_float("learning_rate", 1e-4, 3e-3, log=True),
        "batch_size_pow": trial.suggest_int("batch_size_pow", *BATCH_SIZE_POW),
        "tau": trial.suggest_float("tau", 1e-3, 0.02, log=True),
        "train_freq": trial.suggest_categorical("train_freq", TRAIN_FREQS),
        "gradient_ratio": trial.suggest_categorical("gradient_ratio", GRADIENT_RATIOS),
        "net_arch": trial.suggest_categorical("net_arch", list(NET_ARCHS)),
    }
    if "qswitch" in groups:
        raw["score"] = trial.suggest_categorical("score", ["mean", "sample"])
        raw["critic_reduce"] = trial.suggest_categorical("critic_reduce", ["q1", "min"])
    if "qswitch" in groups or "mixture" in groups:
        raw["commit_steps"] = trial.suggest_categorical("commit_steps", COMMIT_STEPS)
        raw["own_prob"] = trial.suggest_float("own_prob", *OWN_PROB_RANGE)
    if "qswitch" in groups and raw["commit_steps"] > 1:
        # Conditional parameter: a margin only acts on commitments (the collector ignores it at 1).
        raw["switch_margin"] = trial.suggest_categorical("switch_margin", SWITCH_MARGINS)
    if "dnc" in groups:
        raw["beta"] = trial.suggest_categorical("beta", DNC_BETAS)
    return raw


def convert_params(algo: str, raw: dict[str, Any]) -> dict[str, Any]:
    """Constructor arguments of ``algo`` from raw trial parameters (what ``--trial-id`` applies).

    :param algo: a registered algorithm name.
    :param raw: trial parameters, as drawn by the sampler (``trial.params``).
    """
    accepted = accepted_kwargs(get_algo(algo))
    params: dict[str, Any] = {}
    if "one_minus_gamma" in raw:
        params["gamma"] = 1.0 - float(raw["one_minus_gamma"])
    for key in ("learning_rate", "tau", "train_freq", "beta"):
        if key in raw:
            params[key] = raw[key]
    if "batch_size_pow" in raw:
        params["batch_size"] = 2 ** int(raw["batch_size_pow"])
    if "train_freq" in raw and "gradient_ratio" in raw:
        params["gradient_steps"] = max(1, round(int(raw["train_freq"]) * float(raw["gradient_ratio"])))
    if "net_arch" in raw:
        params["policy_kwargs"] = {"net_arch": list(NET_ARCHS[raw["net_arch"]])}
    knobs = ("score", "critic_reduce", "commit_steps", "own_prob", "switch_margin")
    collector_kwargs = {key: raw[key] for key in knobs if key in raw}
    if "qswitch" in SEARCH_GROUPS.get(algo, ()) and raw.get("commit_steps") == 1:
        # No margin was drawn: disable it (a YAML's margin would only cost per-step re-scoring).
        collector_kwargs["switch_margin"] = None
    if collector_kwargs:
        params["collector_kwargs"] = collector_kwargs
    return {key: value for key, value in params.items() if key in accepted}


def make_converter(algo: str) -> Callable[[dict[str, Any]], dict[str, Any]]:
    """rl-zoo3 converter (``HYPERPARAMS_CONVERTER[algo]``): trial parameters -> constructor arguments."""

    def converter(sampled_params: dict[str, Any]) -> dict[str, Any]:
        return convert_params(algo, sampled_params)

    converter.__name__ = f"convert_{algo}_params"
    converter.__doc__ = f"Convert Optuna trial parameters of {algo!r} into constructor arguments."
    return converter


def make_sampler(algo: str) -> Callable[[optuna.Trial, int, int, dict[str, Any]], dict[str, Any]]:
    """rl-zoo3 sampler (``HYPERPARAMS_SAMPLER[algo]``), signature ``(trial, n_actions, n_envs, additional_args)``."""

    def sampler(trial: optuna.Trial, n_actions: int, n_envs: int, additional_args: dict[str, Any]) -> dict[str, Any]:
        from sb3_qmp.zoo import OPTIMIZE_BASE, merge_nested

        params = convert_params(algo, _suggest(trial, algo))
        for key in ("gamma", "batch_size", "gradient_steps"):
            if key in params:
                trial.set_user_attr(key, params[key])
        return merge_nested(OPTIMIZE_BASE.get(algo), params)

    sampler.__name__ = f"sample_{algo}_params"
    sampler.__doc__ = f"Sample hyperparameters of {algo!r} (see sb3_qmp.zoo.samplers)."
    return sampler
