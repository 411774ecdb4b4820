"""Tables of a paper comparison grid: per method, both success metrics and both evaluation modes.

Used by ``paper_comparison.py``. Input: the finished :class:`~sb3_qmp.common.results.Run` objects
(one per algorithm and seed). Per method, every series all its seeds recorded is summarised on the
seeds' common evaluation steps: the mean over tasks at every evaluation (mean and std over seeds,
std with ddof 0), the final value (mean +- std over seeds, and per task), and for the success metrics
the first evaluation at which the mean over tasks reaches the threshold (per seed, and of the
mean-over-seeds curve). The *area under the curve* is the mean over all evaluations of the mean over
tasks (per seed; mean +- std over seeds): a learning-speed measure that still separates methods whose
final values tie (e.g. every method at 100% any-step success by the end). The *late* value is the mean
over the evaluations in the last 10% of the run (at or after 90% of the final evaluation's env step; per
seed, mean +- std over seeds): an end-of-run measure that one evaluation's few episodes per task cannot
swing as much as the final value.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from sb3_qmp.common.evaluation import EVAL_MODES, METRICS, SUCCESS_METRICS
from sb3_qmp.common.results import Run, first_reaching, stack_seeds
from sb3_qmp.plot import display_name

METRIC_NAMES = {"success_any_step": "any-step success (paper)", "success": "strict success"}
LATE_FRACTION = 0.9  # the late value averages the evaluations at or after this share of the final env step


def summarize_method(runs: Sequence[Run], threshold: float) -> dict[str, Any]:
    """The summary of one method's seeds (see the module docstring); series some seed lacks are left out."""
    summary: dict[str, Any] = {
        "seeds": len(runs),
        "seed_ids": [run.seed for run in runs],
        "task_names": runs[0].task_names,
        "metrics": {},
        "incomplete": [],
    }
    for mode in EVAL_MODES:
        for metric in METRICS:
            having = sum(run.has(metric, mode) for run in runs)
            if having < len(runs):
                if having:
                    summary["incomplete"].append(f"{mode} {metric}: {having} of {len(runs)} seeds")
                continue
            steps, values = stack_seeds(runs, metric, mode)  # (S, K, T)
            over_tasks = values.mean(axis=2)  # (S, K)
            late = steps >= LATE_FRACTION * steps[-1]
            late_per_seed = over_tasks[:, late].mean(axis=1)
            entry: dict[str, Any] = {
                "timesteps": steps.tolist(),
                "mean": over_tasks.mean(axis=0).tolist(),
                "std": over_tasks.std(axis=0).tolist(),
                "final_step": int(steps[-1]),
                "final_mean": float(over_tasks[:, -1].mean()),
                "final_std": float(over_tasks[:, -1].std()),
                "final_per_seed": over_tasks[:, -1].tolist(),
                "final_per_task": values[:, -1].mean(axis=0).tolist(),
                "final_per_task_std": values[:, -1].std(axis=0).tolist(),
                "auc_per_seed": over_tasks.mean(axis=1).tolist(),
                "auc_mean": float(over_tasks.mean(axis=1).mean()),
                "auc_std": float(over_tasks.mean(axis=1).std()),
                "late_from_step": int(steps[late][0]),
                "late_per_seed": late_per_seed.tolist(),
                "late_mean": float(late_per_seed.mean()),
                "late_std": float(late_per_seed.std()),
            }
            if metric in SUCCESS_METRICS:
                entry["steps_to_threshold"] = [first_reaching(steps, curve, threshold) for curve in over_tasks]
                entry["steps_to_threshold_of_mean"] = first_reaching(steps, over_tasks.mean(axis=0), threshold)
            summary["metrics"].setdefault(mode, {})[metric] = entry
    return summary


def summarize(runs: Sequence[Run], threshold: float) -> dict[str, Any]:
    """Per algorithm (sorted by name): :func:`summarize_method` of its runs."""
    return {
        algo: summarize_method([run for run in runs if run.algo == algo], threshold) for algo in sorted({r.algo for r in runs})
    }


def behaviour_entry(method: dict[str, Any], metric: str, mode: str) -> tuple[str, dict[str, Any]] | None:
    """``(mode used, entry)`` of ``metric`` in ``mode``; ``mode="mixture"`` falls back to the own policy for
    methods without a mixture evaluation (their collector is their own policy); ``None``: not recorded."""
    metrics = method["metrics"]
    for used in [mode] if mode == "own" else [mode, "own"]:
        if metric in metrics.get(used, {}):
            return used, metrics[used][metric]
    return None


def ordering(summary: dict[str, Any], metric: str, mode: str) -> list[dict[str, Any]]:
    """Methods by final ``metric`` (mean over seeds), best first; ties by the first step the mean curve
    reaches the threshold (earlier first). ``mode="mixture"`` uses the own policy where no mixture exists."""
    rows = []
    for algo, method in summary.items():
        found = behaviour_entry(method, metric, mode)
        if found is not None:
            used, entry = found
            reach = entry.get("steps_to_threshold_of_mean")
            rows.append({"algo": algo, "mode": used, "final_mean": entry["final_mean"], "reach": reach})
    return sorted(rows, key=lambda r: (-round(r["final_mean"], 9), np.inf if r["reach"] is None else r["reach"]))


def orderings(summary: dict[str, Any]) -> dict[str, dict[str, list[dict[str, Any]]]]:
    """:func:`ordering` for every success metric and mode some method recorded."""
    result: dict[str, dict[str, list[dict[str, Any]]]] = {}
    for metric in SUCCESS_METRICS:
        for mode in EVAL_MODES:
            if mode == "mixture" and not any(metric in m["metrics"].get("mixture", {}) for m in summary.values()):
                continue
            rows = ordering(summary, metric, mode)
            if rows:
                result.setdefault(metric, {})[mode] = rows
    return result


def ordering_text(rows: Sequence[dict[str, Any]], mode: str) -> str:
    """``"QMP 0.75 = Shared 0.75 > Separated 0.30"``: ``>`` where the final means differ or the tie is
    broken by reaching the threshold earlier, ``=`` where nothing separates two methods."""
    text = ""
    for i, row in enumerate(rows):
        if i:
            before = rows[i - 1]
            tied = round(before["final_mean"], 9) == round(row["final_mean"], 9) and before["reach"] == row["reach"]
            text += " = " if tied else " > "
        text += f"{display_name(row['algo'])}{'' if row['mode'] == mode else ' (own)'} {_num(row['final_mean'])}"
    return text


def _steps(value: float | None) -> str:
    if value is None:
        return "never"
    if value >= 1e6:  # three decimals where two would merge distinct steps (a final evaluation 2k steps later)
        return f"{value / 1e6:.2f}M" if value % 10_000 == 0 else f"{value / 1e6:.3f}M"
    return f"{value / 1e3:.0f}k"


def _num(value: float) -> str:
    """Two decimals of ``value`` rounded to 9 first, as the orderings compare: float noise on either side of a
    rounding boundary (0.575 as a mean of 0.30, 0.70 and 0.725) prints the same in every table."""
    return f"{round(value, 9):.2f}"


def _mean_std(entry: dict[str, Any] | None) -> str:
    return "n/a" if entry is None else f"{_num(entry['final_mean'])} ± {_num(entry['final_std'])}"


def _reach(entry: dict[str, Any] | None) -> str:
    if entry is None:
        return "n/a"
    return (
        ", ".join(_steps(v) for v in entry["steps_to_threshold"])
        + f" (mean curve: {_steps(entry['steps_to_threshold_of_mean'])})"
    )


def _rows(summary: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    """(algo, mode, that mode's metrics) for every method and recorded mode, own first."""
    return [
        (algo, mode, method["metrics"][mode])
        for algo, method in summary.items()
        for mode in EVAL_MODES
        if mode in method["metrics"]
    ]


def to_markdown(
    summary: dict[str, Any],
    threshold: float,
    runs_info: Sequence[dict[str, Any]] = (),
    missing: Sequence[str] = (),
    header: str = "",
    final_info: dict[str, Any] | None = None,
) -> str:
    """The summary as markdown tables (see ``paper_comparison.py``)."""
    lines = [header, ""] if header else []
    if missing:
        lines += [f"**Not finished yet ({len(missing)}):** " + ", ".join(missing), ""]
    lines += [
        "Any-step success = the episode's success flag was set at any step (the authors' count; comparable with the "
        "paper). Strict success = `is_success` at the episode's end. Evaluation `own` = each task's own policy; "
        "`mixture` = the algorithm's collector (mixture algorithms only). Mean ± std over seeds (ddof 0).",
        "",
        f"| method | evaluation | seeds | final any-step success | env steps to {threshold:.0%} any-step (per seed) "
        f"| final strict success | env steps to {threshold:.0%} strict (per seed) |",
        "|---|---|---:|---|---|---|---|",
    ]
    for algo, mode, metrics in _rows(summary):
        any_step, strict = metrics.get("success_any_step"), metrics.get("success")
        lines.append(
            f"| {display_name(algo)} | {mode} | {summary[algo]['seeds']} | {_mean_std(any_step)} | {_reach(any_step)} "
            f"| {_mean_std(strict)} | {_reach(strict)} |"
        )
    incomplete = [f"{display_name(a)}: {', '.join(m['incomplete'])}" for a, m in summary.items() if m["incomplete"]]
    if incomplete:
        lines += ["", "Series left out because some seeds lack them (older files): " + "; ".join(incomplete) + "."]

    lines += ["", "Ordering by final success (mean over seeds; `mixture` uses the own policy where a method has none):", ""]
    for metric, by_mode in orderings(summary).items():
        for mode, rows in by_mode.items():
            lines.append(f"- {METRIC_NAMES[metric]}, {mode}: {ordering_text(rows, mode)}")

    lines += [
        "",
        "Area under the curve: the mean over all evaluations of the mean over tasks (mean ± std over seeds); "
        "it separates methods whose final values tie:",
        "",
        "| method | evaluation | any-step success (paper) | strict success | stages completed |",
        "|---|---|---|---|---|",
    ]
    for algo, mode, metrics in _rows(summary):
        areas = [
            "n/a"
            if metrics.get(m) is None or "auc_mean" not in metrics[m]
            else f"{_num(metrics[m]['auc_mean'])} ± {_num(metrics[m]['auc_std'])}"
            for m in ("success_any_step", "success", "stages")
        ]
        lines.append(f"| {display_name(algo)} | {mode} | " + " | ".join(areas) + " |")

    lines += [
        "",
        "Late success: the mean over the evaluations in the last 10% of the run (mean ± std over seeds; the final "
        "value rests on one evaluation of a few episodes per task, this on all of the last ones):",
        "",
        "| method | evaluation | evaluations from | any-step success (paper) | strict success |",
        "|---|---|---|---|---|",
    ]
    for algo, mode, metrics in _rows(summary):
        entries = [metrics.get(m) for m in SUCCESS_METRICS]
        late = [
            "n/a" if e is None or "late_mean" not in e else f"{_num(e['late_mean'])} ± {_num(e['late_std'])}" for e in entries
        ]
        start = next((_steps(e["late_from_step"]) for e in entries if e is not None and "late_from_step" in e), "n/a")
        lines.append(f"| {display_name(algo)} | {mode} | {start} | " + " | ".join(late) + " |")

    task_names = next(iter(summary.values()))["task_names"]
    num_tasks = len(next(iter(next(iter(summary.values()))["metrics"]["own"].values()))["final_per_task"])
    names = [f"task {t}" + (f" ({task_names[t]})" if t < len(task_names) else "") for t in range(num_tasks)]
    lines += ["", "Final success per task (mean over seeds), any-step / strict:", ""]
    lines += ["| method | evaluation | " + " | ".join(names) + " |", "|---|---|" + "---|" * num_tasks]
    for algo, mode, metrics in _rows(summary):
        cells = []
        for t in range(num_tasks):
            values = [metrics[m]["final_per_task"][t] if m in metrics else None for m in SUCCESS_METRICS]
            cells.append(" / ".join("n/a" if v is None else f"{v:.2f}" for v in values))
        lines.append(f"| {display_name(algo)} | {mode} | " + " | ".join(cells) + " |")

    if any("stages" in metrics for _, _, metrics in _rows(summary)):
        lines += ["", "Stages completed per task at the final evaluation (mean ± std over seeds):", ""]
        lines += ["| method | evaluation | " + " | ".join(names) + " |", "|---|---|" + "---|" * num_tasks]
        for algo, mode, metrics in _rows(summary):
            if "stages" in metrics:
                stages = metrics["stages"]
                cells = [f"{m:.2f} ± {s:.2f}" for m, s in zip(stages["final_per_task"], stages["final_per_task_std"])]
                lines.append(f"| {display_name(algo)} | {mode} | " + " | ".join(cells) + " |")

    if final_info:
        key = final_info["key"]
        lines += [
            "",
            f"`{key}` at the end of the final models' own-policy episodes (mean per task; per seed in brackets):",
            "",
        ]
        lines += [f"| method | {key} per task |", "|---|---|"]
        for algo, per_seed in final_info["values"].items():
            table = np.array(per_seed)
            per_task = " / ".join(f"{column.mean():.2f} [{', '.join(f'{v:.1f}' for v in column)}]" for column in table.T)
            lines.append(f"| {display_name(algo)} | {per_task} |")

    for metric in SUCCESS_METRICS:
        columns = [(algo, mode, metrics[metric]) for algo, mode, metrics in _rows(summary) if metric in metrics]
        if not columns:
            continue
        lines += ["", f"{METRIC_NAMES[metric].capitalize()} over tasks at each evaluation (mean ± std over seeds):", ""]
        lines.append("| env steps | " + " | ".join(f"{display_name(a)} ({m})" for a, m, _ in columns) + " |")
        lines.append("|---:|" + "---|" * len(columns))
        # Rows by env step (methods may be evaluated at different steps): a method without that step is blank.
        at = [{step: i for i, step in enumerate(e["timesteps"])} for _, _, e in columns]
        for step in sorted(set().union(*at)):
            cells = [
                f"{e['mean'][i[step]]:.2f} ± {e['std'][i[step]]:.2f}" if step in i else "" for (_, _, e), i in zip(columns, at)
            ]
            lines.append(f"| {_steps(step)} | " + " | ".join(cells) + " |")

    if runs_info:
        # Runs recorded before the grid runner measured CPU time keep the table they always had.
        with_cpu = any(info.get("cpu_time_s") is not None for info in runs_info)
        cpu_caption = "; CPU time (user + system) of its process, without the time it was stopped" if with_cpu else ""
        lines += ["", f"Runs (wall time of the training command{cpu_caption}; the exact command line):", ""]
        lines += [
            f"| method | seed | env steps | wall time |{' CPU time |' if with_cpu else ''} command |",
            f"|---|---:|---:|---:|{'---:|' if with_cpu else ''}---|",
        ]
        for info in runs_info:
            wall = "?" if info.get("wall_time_s") is None else f"{info['wall_time_s']:.0f} s"
            cpu = "" if not with_cpu else ("? |" if info.get("cpu_time_s") is None else f"{info['cpu_time_s']:.0f} s |")
            steps = "?" if info.get("n_timesteps") is None else str(info["n_timesteps"])
            command = info.get("command") or "?"
            times = f"{wall} | {cpu}" if cpu else f"{wall} |"
            lines.append(f"| {display_name(info['algo'])} | {info.get('seed', '?')} | {steps} | {times} `{command}` |")
    return "\n".join(lines)
