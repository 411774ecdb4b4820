"""Does QMP's selection on Maze Navigation follow the tasks' shared routes?

The paper motivates the maze with routes that "coincide at some parts, either in the same direction or
opposite direction". Every task's policy heads for its own goal from wherever it is, so what makes task j's
policy useful to task i is how often, along task i's route, heading for j's goal means moving the way i
must move. This script measures that on the maze's cell graph and compares it with QMP's selection
matrices (from a comparison summary, ``paper_comparison.py``):

* **route agreement** ``A[i, j]``: over the cells of task i's shortest routes (every cell on some
  shortest start-to-goal path, the goal left out), the share where some move towards j's goal is also a
  move towards i's goal (a move: to a side-by-side open cell, one step closer);
* **route conflict** ``C[i, j]``: the share where no move towards j's goal is, but one of them reverses a
  move towards i's goal (j's policy would take task i back the way it came);
* per run, the share of task i's collection steps on which policy j acted (the cumulative selection
  counts of the last evaluation, rows normalised; also over the last ``--last`` env steps), compared task
  by task: does task i borrow most from the policies whose routes agree with its own? The statistic is
  the mean over tasks of the rank correlation (Spearman), over the other tasks, of the share with the
  agreement, with a one-sided p-value from shuffling each task's shares of the other policies among them
  (within tasks, so that how much a task borrows in all, and how much its route agrees with everyone's,
  cannot make a correlation by themselves), and the mean share difference between agreeing and other
  policies. Over several runs, the statistic is the mean of the runs' correlations, with a p-value from
  shuffling every run's rows independently (the question "do the runs, taken together, follow the routes?").

    python benchmarks/maze_sharing.py --summary benchmarks/results/paper_maze/summary.json \\
        --out benchmarks/results/paper_maze
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np

from sb3_qmp.envs.maze import TASK_CELLS, maze_distances

HERE = Path(__file__).resolve().parent
Cell = tuple[int, int]
MOVES: tuple[Cell, ...] = ((1, 0), (-1, 0), (0, 1), (0, -1))
PERMUTATIONS = 2000  # of the within-row shuffles behind the p-value


def moves_towards(distances: dict[Cell, int], cell: Cell) -> set[Cell]:
    """The moves from ``cell`` that bring it one move closer to the goal of ``distances``."""
    here = distances[cell]
    return {m for m in MOVES if distances.get((cell[0] + m[0], cell[1] + m[1]), here) == here - 1}


def route_cells(task: int) -> list[Cell]:
    """Cells on some shortest route of ``task`` from its start to its goal (the goal left out), sorted."""
    start, goal = TASK_CELLS[task]
    from_start, to_goal = maze_distances(start), maze_distances(goal)
    length = to_goal[start]
    return sorted(c for c in to_goal if c != goal and from_start.get(c, length + 1) + to_goal[c] == length)


def route_matrices(num_tasks: int = len(TASK_CELLS)) -> tuple[np.ndarray, np.ndarray]:
    """``(agreement, conflict)``, each ``(T, T)`` (see the module docstring); the diagonal of agreement is 1."""
    to_goal = [maze_distances(goal) for _, goal in TASK_CELLS[:num_tasks]]
    agreement, conflict = np.zeros((num_tasks, num_tasks)), np.zeros((num_tasks, num_tasks))
    for i in range(num_tasks):
        cells = route_cells(i)
        for j in range(num_tasks):
            agree = reverse = 0
            for cell in cells:
                own, other = moves_towards(to_goal[i], cell), moves_towards(to_goal[j], cell)
                if own & other:
                    agree += 1
                elif {(-m[0], -m[1]) for m in own} & other:
                    reverse += 1
            agreement[i, j], conflict[i, j] = agree / len(cells), reverse / len(cells)
    return agreement, conflict


def rank_correlation(x: np.ndarray, y: np.ndarray) -> float:
    """Spearman's rank correlation (ties get their average rank)."""

    def ranks(values: np.ndarray) -> np.ndarray:
        order = np.argsort(values, kind="stable")
        result = np.empty(len(values))
        result[order] = np.arange(len(values), dtype=float)
        for value in np.unique(values):  # average rank within ties
            tied = values == value
            result[tied] = result[tied].mean()
        return result

    return float(np.corrcoef(ranks(np.asarray(x, float)), ranks(np.asarray(y, float)))[0, 1])


def selection_shares(run: dict[str, Any], last: float | None = None) -> np.ndarray:
    """``(T, T)``: per task collecting (row), the share of its selections each policy (column) made, over the
    whole run (the cumulative counts of the last evaluation) or, with ``last``, over its last ``last`` env
    steps (the counts' growth since the evaluation closest to that many steps before the end)."""
    counts = np.asarray(run["selection_counts"], dtype=float)
    steps = np.asarray(run["timesteps"])
    window = counts[-1]
    if last is not None:
        window = window - counts[int(np.argmin(np.abs(steps - (steps[-1] - last))))]
    if (window.sum(axis=1) == 0).any():
        raise SystemExit(f"{run['path']}: a task made no selection in the window (last={last}).")
    return window / window.sum(axis=1, keepdims=True)


def within_task_correlation(shares: np.ndarray, route: np.ndarray, order: np.ndarray | None = None) -> float:
    """The mean over tasks i of the rank correlation, over the other tasks j, of i's share of policy j with
    ``route[i, j]`` (tasks whose row is constant are left out). ``order``: a permutation of each row's
    other tasks (the shuffles of :func:`permutation_p_value`)."""
    values = []
    for i in range(len(shares)):
        x, y = np.delete(shares[i], i), np.delete(route[i], i)
        if order is not None:
            x = x[order[i]]
        if np.ptp(x) > 0 and np.ptp(y) > 0:
            values.append(rank_correlation(x, y))
    return float(np.mean(values)) if values else float("nan")


def permutation_p_value(
    runs: list[np.ndarray], route: np.ndarray, observed: float, permutations: int | None = None, seed: int = 0
) -> float:
    """One-sided p-value of ``observed``, the mean over ``runs`` (selection share matrices) of their
    :func:`within_task_correlation`, when each task's shares of the other policies are shuffled among them,
    in every run independently (``permutations`` times; default :data:`PERMUTATIONS`)."""
    permutations = PERMUTATIONS if permutations is None else permutations
    rng = np.random.default_rng(seed)
    at_least = 0
    for _ in range(permutations):
        shuffled = []
        for shares in runs:
            order = np.array([rng.permutation(len(shares) - 1) for _ in range(len(shares))])
            shuffled.append(within_task_correlation(shares, route, order))
        at_least += float(np.mean(shuffled)) >= observed - 1e-12
    return (at_least + 1) / (permutations + 1)


def compare(shares: np.ndarray, agreement: np.ndarray, conflict: np.ndarray) -> dict[str, Any]:
    """How one selection matrix relates to the route matrices, task by task (rows), over the other tasks."""
    num_tasks = len(shares)
    correlation = within_task_correlation(shares, agreement)
    differences = []  # per task: mean share of the agreeing routes' policies minus that of the others
    for i in range(num_tasks):
        x, a = np.delete(shares[i], i), np.delete(agreement[i], i)
        if (a >= 0.5).any() and (a < 0.5).any():
            differences.append(float(x[a >= 0.5].mean() - x[a < 0.5].mean()))
    top = [int(np.argmax(np.where(np.arange(num_tasks) != i, shares[i], -1.0))) for i in range(num_tasks)]
    return {
        "within_task_correlation_agreement": correlation,
        "p_value_agreement": permutation_p_value([shares], agreement, correlation),
        "within_task_correlation_conflict": within_task_correlation(shares, conflict),
        "share_difference_agreeing_minus_other": float(np.mean(differences)) if differences else None,
        "tasks_with_both_groups": len(differences),
        "top_lender": top,
        "top_lender_agreement": [float(agreement[i, j]) for i, j in enumerate(top)],
    }


def together(results: list[dict[str, Any]], shares: list[np.ndarray], agreement: np.ndarray) -> dict[str, Any]:
    """Several runs' :func:`compare` results taken together: the means of their per-run values, and the p-value
    of the mean correlation with the agreement from shuffling every run's rows independently."""
    correlation = float(np.mean([r["within_task_correlation_agreement"] for r in results]))
    differences = [r["share_difference_agreeing_minus_other"] for r in results]
    return {
        "within_task_correlation_agreement": correlation,
        "p_value_agreement": permutation_p_value(shares, agreement, correlation),
        "within_task_correlation_conflict": float(np.mean([r["within_task_correlation_conflict"] for r in results])),
        "share_difference_agreeing_minus_other": None if None in differences else float(np.mean(differences)),
        "tasks_with_both_groups": min(r["tasks_with_both_groups"] for r in results),
        "top_lender_agreement": [],
    }


def analyse(summary: dict[str, Any], algo: str = "qmp", last: float | None = None) -> dict[str, Any]:
    """The route matrices and, for every run of ``algo`` with selection counts, :func:`compare` (also for the
    mean of the runs' share matrices), over the whole runs and, with ``last``, over their last ``last`` env
    steps."""
    runs = [r for r in summary["runs"] if r["algo"] == algo and r.get("selection_counts") is not None]
    if not runs:
        raise SystemExit(f"No {algo} run with selection counts in the summary.")
    num_tasks = len(selection_shares(runs[0]))
    if num_tasks != len(TASK_CELLS):
        raise SystemExit(f"The summary's runs have {num_tasks} tasks; Maze Navigation has {len(TASK_CELLS)}.")
    agreement, conflict = route_matrices(num_tasks)
    windows: dict[str, Any] = {}
    for name, window in [("whole run", None)] + ([(f"last {last / 1e6:g}M env steps", last)] if last else []):
        shares = [selection_shares(r, window) for r in runs]
        per_run = {f"seed {r['seed']}": compare(m, agreement, conflict) for r, m in zip(runs, shares)}
        windows[name] = {
            "runs": per_run,
            "mean_of_runs": compare(np.mean(shares, axis=0), agreement, conflict),
            "mean_shares": np.mean(shares, axis=0).tolist(),
        }
        if len(runs) > 1:
            windows[name]["runs_together"] = together(list(per_run.values()), shares, agreement)
    return {
        "algo": algo,
        "agreement": agreement.tolist(),
        "conflict": conflict.tolist(),
        "route_cells": [len(route_cells(t)) for t in range(num_tasks)],
        "windows": windows,
    }


def to_markdown(result: dict[str, Any]) -> str:
    agreement = np.asarray(result["agreement"])
    num_tasks = len(agreement)
    lines = [
        "# Maze: does QMP's selection follow the shared routes?",
        "",
        "Route agreement `A[i, j]`: along task i's shortest routes, the share of cells where a move towards task j's "
        "goal is also a move towards task i's (`benchmarks/maze_sharing.py`, module docstring). Rows: task i "
        "(collecting); columns: task j (whose policy would act).",
        "",
        "| task | " + " | ".join(str(j) for j in range(num_tasks)) + " |",
        "|---|" + "---|" * num_tasks,
    ]
    for i in range(num_tasks):
        cells = ["" if i == j else f"{agreement[i, j]:.2f}" for j in range(num_tasks)]
        lines.append(f"| {i} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "Selection (share of task i's steps on which policy j acted) against the routes, task by task: the mean "
        "over tasks i of the rank correlation (Spearman's), over the other tasks j, of the share with the "
        "agreement (p: one-sided, from shuffling each task's shares of the other policies among them); the mean "
        "over tasks of the share difference between policies with agreeing routes (A >= 0.5) and the others. "
        "*Runs together*: the means of the runs' values, p from shuffling every run's rows independently; "
        "*mean of the runs*: the same measures of the runs' mean share matrix.",
        "",
        "| window | run | correlation with agreement (p) | with conflict | share difference, A >= 0.5 minus A < 0.5 "
        "(tasks) | top lender's agreement, tasks 0..9 |",
        "|---|---|---|---|---|---|",
    ]
    for window, entry in result["windows"].items():
        rows = [*entry["runs"].items(), ("mean of the runs", entry["mean_of_runs"])]
        if "runs_together" in entry:
            rows.insert(len(entry["runs"]), (f"runs together ({len(entry['runs'])})", entry["runs_together"]))
        for name, row in rows:
            difference = row["share_difference_agreeing_minus_other"]
            lines.append(
                f"| {window} | {name} | {row['within_task_correlation_agreement']:.2f} ({row['p_value_agreement']:.3f}) "
                f"| {row['within_task_correlation_conflict']:.2f} "
                f"| {'n/a' if difference is None else f'{difference:+.3f}'} ({row['tasks_with_both_groups']}) "
                f"| {', '.join(f'{a:.2f}' for a in row['top_lender_agreement'])} |"
            )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--summary", type=Path, default=HERE / "results" / "paper_maze" / "summary.json")
    parser.add_argument("--algo", default="qmp", help="the mixture algorithm whose selections are compared")
    parser.add_argument("--last", type=float, default=1_000_000, help="also over the runs' last this many env steps")
    parser.add_argument("--out", type=Path, default=None, help="folder for maze_sharing.json / .md")
    args = parser.parse_args(argv)
    if not args.summary.is_file():
        raise SystemExit(f"No summary at {args.summary}: run paper_comparison.py (or paper_campaign.py) first.")
    result = analyse(json.loads(args.summary.read_text()), args.algo, args.last or None)
    text = to_markdown(result)
    print(text)
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "maze_sharing.json").write_text(json.dumps(result, indent=1) + "\n")
        (args.out / "maze_sharing.md").write_text(text)
    return result


if __name__ == "__main__":
    main()
