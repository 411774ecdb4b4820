"""Figure of the sharing study (``benchmarks/sharing_study.py``): one column per task set.

Top row: the own policies' success on the task set's focus tasks (its sparse tasks; every task on a set
without one) along training, mean over seeds with a band of one standard error. Bottom row: the final
own-policy success on the same tasks with the summary's 95% bootstrap interval over seeds, and the
number of (seed, task) pairs solved above each bar. The intervals come from the summary, so the figure
never disagrees with the tables.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np


def focus_tasks(num_tasks: int, sparse: Sequence[int]) -> list[int]:
    """The tasks a task set is judged on: its sparse tasks, or all of them when it has none."""
    return list(sparse) if sparse else list(range(num_tasks))


def focus_curve(record: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    """``(env steps, own success averaged over the focus tasks)`` along one cell's learning curve."""
    tasks = focus_tasks(record["num_tasks"], record["sparse_tasks"])
    success = np.asarray(record["curve_success"], dtype=np.float64)[:, tasks]
    return np.asarray(record["curve_steps"], dtype=np.float64), success.mean(axis=1)


def focus_solved(records: Sequence[dict[str, Any]], threshold: float) -> tuple[int, int]:
    """``(solved, attempts)``: (seed, focus task) pairs whose final own-policy success reaches ``threshold``."""
    pairs = [
        r["eval_success"][t] for r in records for t in focus_tasks(r["num_tasks"], r["sparse_tasks"])
    ]  # fmt: skip
    return sum(v is not None and v >= threshold for v in pairs), len(pairs)


def plot_sharing_study(
    records: Sequence[dict[str, Any]],
    summary: Sequence[dict[str, Any]],
    envs: Sequence[str],
    configs: Sequence[str],
    output_file: str,
    threshold: float = 0.8,
) -> str | None:
    """Draw the study's figure into ``output_file``; returns its path, or ``None`` if no cell is finished.

    :param records: the finished cells (``cells/<task set>/<config>/seed_<n>.json``).
    :param summary: the summary rows of ``sharing_study.json`` (``env``, ``config``, ``label``,
        ``focus_tasks``).
    :param envs: task sets, one column each, in this order (those without a cell are left out).
    :param configs: configurations, one line and one bar each, in this order (colour by position).
    :param output_file: PNG path.
    :param threshold: final own-policy success that counts as solved.
    """
    rows = {(s["env"], s["config"]): s for s in summary}
    envs = [e for e in envs if any(env == e for env, _ in rows)]
    if not envs:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colors = plt.get_cmap("tab10")
    fig, axes = plt.subplots(2, len(envs), figsize=(4.2 * len(envs), 7.4), squeeze=False)
    for col, env_id in enumerate(envs):
        top, bottom = axes[0, col], axes[1, col]
        bars: list[tuple[int, str, dict[str, Any], str]] = []  # (colour, label, interval, solved)
        for k, config in enumerate(configs):
            row = rows.get((env_id, config))
            group = [r for r in records if r["env"] == env_id and r["config"] == config]
            if row is None or not group:
                continue
            curves = [focus_curve(r) for r in group]
            steps = curves[0][0]
            values = np.stack([c for s, c in curves if len(s) == len(steps)])
            mean = values.mean(axis=0)
            sem = values.std(axis=0, ddof=1) / np.sqrt(len(values)) if len(values) > 1 else np.zeros_like(mean)
            top.plot(steps, mean, color=colors(k), label=row["label"], lw=1.4)
            top.fill_between(steps, mean - sem, mean + sem, color=colors(k), alpha=0.15, lw=0)
            solved, attempts = focus_solved(group, threshold)
            bars.append((k, row["label"], row["focus_tasks"]["eval_success"], f"{solved}/{attempts}"))
        sample = next(r for r in records if r["env"] == env_id)
        focus = "the sparse tasks" if sample["sparse_tasks"] else "all tasks"
        seeds = max(len(rows[env_id, c]["seeds"]) for c in configs if (env_id, c) in rows)
        top.set_title(f"{env_id}\nown success on {focus}, up to {seeds} seeds (mean ± s.e.)", fontsize=8)
        top.set_xlabel("env steps (all tasks)", fontsize=8)
        top.set_ylim(-0.03, 1.03)
        top.tick_params(labelsize=7)
        x = np.arange(len(bars))
        means = np.array([b[2]["mean"] for b in bars])
        err = np.array([[b[2]["mean"] - b[2]["low"], b[2]["high"] - b[2]["mean"]] for b in bars]).T
        bottom.bar(x, means, color=[colors(b[0]) for b in bars], alpha=0.8)
        bottom.errorbar(x, means, yerr=np.clip(err, 0.0, None), fmt="none", ecolor="k", capsize=3, lw=1)
        for xi, bar in zip(x, bars):
            bottom.text(xi, 1.04, bar[3], ha="center", fontsize=7)
        bottom.set_xticks(x, [b[1] for b in bars], rotation=60, ha="right", fontsize=7)
        bottom.set_ylim(0.0, 1.12)
        bottom.set_title(f"final own success (95% CI); solved >= {threshold:g} above", fontsize=8)
        bottom.tick_params(axis="y", labelsize=7)
    axes[0, 0].legend(fontsize=6, loc="upper left")
    fig.tight_layout()
    fig.savefig(output_file, dpi=110)
    plt.close(fig)
    return output_file
