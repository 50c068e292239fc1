"""After training: the final one-shot evaluation next to the baselines, and the plots.

Plots are drawn on ``matplotlib.figure.Figure`` objects and saved to PNG
files: no pyplot, no window and no backend change, so they work on a server,
in the tests and inside a notebook alike.
"""
from __future__ import annotations

import csv
import json

import numpy as np
from matplotlib.figure import Figure

from .baselines import get_baseline
from .oneshot import ModelScorer, evaluate_tasks

FINAL_SEED = 2015  # the final task list does not depend on the training seed: runs compare on the same tasks


def final_evaluation(net, val, tasks, baselines=("mhd", "pixel"), views=1):
    """{"model": OneShotResult, "<baseline>": OneShotResult, ...} on the same ``tasks``.

    ``model`` scores with ``views`` test-time views (see ``ModelScorer``); with
    more than one, ``model_1view`` holds the plain score of the same network.
    """
    from .train import embedding_accuracy, view_embeddings  # train imports this module's neighbours: keep local
    embs = view_embeddings(net, val.images, views)  # the first view serves model_1view as well
    results = {"model": embedding_accuracy(net, val, tasks, views=views, embeddings=embs)}
    if views > 1:
        results["model_1view"] = embedding_accuracy(net, val, tasks, views=1, embeddings=embs)
    for name in baselines:
        results[name] = evaluate_tasks(get_baseline(name), np.ascontiguousarray(val.images, np.float32), tasks)
    return results


def results_table(results, ways, views=1):
    """Accuracy with 95% interval per scorer, as aligned text."""
    lines = [f"{ways}-way one-shot accuracy on held-out alphabets ({results['model'].trials} tasks):"]
    width = max(8, *(len(name) for name in results))
    for name, r in results.items():
        lo, hi = r.ci95
        lines.append(f"  {name:<{width}} {100 * r.accuracy:5.1f}%   (95% CI {100 * lo:.1f}-{100 * hi:.1f}%)")
    if views > 1:
        lines.append(f"  (model: p(same) averaged over {views} views, the pair turned and mirrored alike; "
                     f"model_1view: the same network, one view)")
    return "\n".join(lines)


def results_json(results):
    return {name: {"accuracy": r.accuracy, "ci95": list(r.ci95), "ways": r.ways, "trials": r.trials,
                   "queries": int(r.total.sum())} for name, r in results.items()}


def read_metrics(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def plot_curves(metrics_csv, out_png):
    """Loss (running mean) and validation one-shot accuracy against training pairs."""
    rows = read_metrics(metrics_csv)
    pairs = np.array([float(r["pairs"]) for r in rows])
    loss = np.array([float(r["loss"]) for r in rows])
    val = [(float(r["pairs"]), float(r["val_acc"])) for r in rows if r["val_acc"] != ""]
    fig = Figure(figsize=(10, 3.6))
    a1, a2 = fig.subplots(1, 2)
    a1.plot(pairs, loss, color="tab:blue")
    a1.set(xlabel="training pairs", ylabel="loss (running mean)", title="Training loss")
    if val:
        v = np.array(val)
        a2.plot(v[:, 0], 100 * v[:, 1], "o-", color="tab:green")
    a2.set(xlabel="training pairs", ylabel="accuracy (%)", title="Validation 20-way one-shot accuracy")
    for a in (a1, a2):
        a.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out_png, dpi=100)


def plot_task(net, val, task, out_png, views=1):
    """One task: the query, the support images, the model's choice (green if right, red if wrong)."""
    q = task.queries[0]
    support = task.support
    p = ModelScorer(net, views=views).score(val.images[[q]], np.ascontiguousarray(val.images[support]))[0]
    choice = int(p.argmax()) // task.shots
    truth = int(task.query_labels[0])
    cols = 10
    rows = int(np.ceil(len(support) / cols))
    fig = Figure(figsize=(cols * 1.1, (rows + 1) * 1.25))
    axes = fig.subplots(rows + 1, cols)
    for a in axes.ravel():
        a.axis("off")
    axes[0, 0].imshow(val.images[q], cmap="gray_r", vmin=0, vmax=1)
    axes[0, 0].set_title("query", fontsize=9)
    axes[0, 1].text(0, 0.5, f"{task.ways}-way task: which character is the query?\n"
                    f"green: the model's choice (right), red: its choice (wrong), blue frame: the answer",
                    fontsize=9, va="center")
    for k, idx in enumerate(support):
        a = axes[1 + k // cols, k % cols]
        a.imshow(val.images[idx], cmap="gray_r", vmin=0, vmax=1)
        a.set_title(f"p={p[k]:.2f}", fontsize=8)
        cls = k // task.shots
        color = None
        if cls == choice:
            color = "tab:green" if choice == truth else "tab:red"
        elif cls == truth:
            color = "tab:blue"
        if color:
            a.axis("on")
            a.set_xticks([])
            a.set_yticks([])
            for spine in a.spines.values():
                spine.set_color(color)
                spine.set_linewidth(3)
    fig.subplots_adjust(left=0.02, right=0.98, top=0.9, bottom=0.02, hspace=0.5)
    fig.savefig(out_png, dpi=100)
    return choice == truth


def write_results(path, results, extra=None):
    data = results_json(results)
    data.update(extra or {})
    path.write_text(json.dumps(data, indent=2))
