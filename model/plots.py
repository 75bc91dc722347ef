"""The plots people look at, drawn without pyplot: reliability, cumulative gains and lift, score
distribution by outcome, and the global reasons summary (features named by the catalogue's labels,
`feature_label`)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from leadscore.features import catalog
from leadscore.model.evaluate import reliability_points

if TYPE_CHECKING:
    from matplotlib.figure import Figure


def figures(
    p: np.ndarray,
    y: np.ndarray,
    contributions: np.ndarray,
    features: tuple[str, ...],
    weight: np.ndarray | None = None,
) -> dict[str, Any]:
    """name -> matplotlib Figure, ready for `mlflow.log_figure`. `weight`: the holdout's inverse-propensity
    weights, so the reliability curve is the population's, as the logged ECE is.

    Built without pyplot (no global backend switch, nothing left open), so it is safe in notebooks and in
    long-running processes.
    """
    from matplotlib.figure import Figure

    figs = {}
    fig = Figure(figsize=(5, 5))
    ax = fig.subplots()
    xs, ys = (a.tolist() for a in reliability_points(p, y, 15, weight))
    top = max(max(xs, default=1), max(ys, default=1)) * 1.05
    ax.plot([0, top], [0, top], "--", color="grey", label="perfect")
    ax.plot(xs, ys, "o-", label="model")
    ax.set(xlabel="predicted probability", ylabel="observed qualification rate", title="Reliability")
    ax.legend()
    figs["reliability.png"] = fig

    fig = Figure(figsize=(10, 4))
    axes = fig.subplots(1, 2)
    desc = np.argsort(-p, kind="stable")
    gains = np.cumsum(y[desc]) / max(y.sum(), 1)
    share = np.arange(1, len(p) + 1) / len(p)
    axes[0].plot(share, gains, label="model")
    axes[0].plot([0, 1], [0, 1], "--", color="grey", label="random")
    axes[0].set(
        xlabel="share of leads contacted (by score)",
        ylabel="share of qualified leads found",
        title="Cumulative gains",
    )
    axes[0].legend()
    deciles = np.array_split(desc, 10)
    axes[1].bar(range(1, 11), [y[d].mean() / max(y.mean(), 1e-12) if len(d) else 0 for d in deciles])
    axes[1].axhline(1, color="grey", ls="--")
    axes[1].set(xlabel="score decile (1 = highest)", ylabel="lift", title="Lift by decile")
    figs["gains_lift.png"] = fig

    fig = Figure(figsize=(6, 4))
    ax = fig.subplots()
    bins = np.linspace(0, 100, 41).tolist()
    ax.hist(100 * p[y == 0], bins=bins, alpha=0.6, density=True, label="not qualified")
    ax.hist(100 * p[y == 1], bins=bins, alpha=0.6, density=True, label="qualified")
    ax.set(xlabel="score", ylabel="density", title="Score distribution by outcome")
    ax.legend()
    figs["score_distribution.png"] = fig

    figs["reasons_summary.png"] = reasons_figure(reasons_summary(contributions, features))
    return figs


def feature_label(name: str) -> str:
    """What a feature measures, for people: the catalogue's label; a flat export's column keeps its header."""
    spec = catalog.BY_NAME.get(name)
    return spec.title if spec is not None else name


def reasons_summary(contributions: np.ndarray, features: tuple[str, ...]) -> pd.DataFrame:
    """One row per feature (index: its label, `feature_label`), most important first: family,
    mean |contribution|, mean of the positive and of the negative contributions (log-odds) and the mean
    contribution."""
    C = np.asarray(contributions, float)
    out = pd.DataFrame(
        {
            "feature": list(features),
            "family": [catalog.BY_NAME[f].family if f in catalog.BY_NAME else "custom" for f in features],
            "mean |contribution|": np.abs(C).mean(axis=0),
            "raises (mean of +)": np.where(C > 0, C, 0).mean(axis=0),
            "lowers (mean of -)": np.where(C < 0, C, 0).mean(axis=0),
            "mean contribution": C.mean(axis=0),
        },
        index=pd.Index([feature_label(f) for f in features], name="feature (label)"),
    )
    return out.sort_values("mean |contribution|", ascending=False, kind="stable")


def reasons_figure(summary: pd.DataFrame, top: int = 15, title: str = "Global reasons summary") -> Figure:
    """The `top` features of `reasons_summary` as bars of what raises and lowers the score, labelled for
    people; the legend sits below the axes, off the bars."""
    from matplotlib.figure import Figure

    shown = summary.head(top).iloc[::-1]
    fig = Figure(figsize=(8, 0.32 * len(shown) + 1.8), layout="constrained")
    ax = fig.subplots()
    ax.barh(shown.index, shown["raises (mean of +)"], color="tab:green", label="raises the score")
    ax.barh(shown.index, shown["lowers (mean of -)"], color="tab:red", label="lowers the score")
    ax.axvline(0, color="grey", lw=0.8)
    ax.set(xlabel="mean contribution (log-odds)", title=title)
    fig.legend(loc="outside lower center", ncols=2, frameon=False)
    return fig
