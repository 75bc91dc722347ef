"""The monitoring report (`serve.monitoring.monitor`) as one self-contained HTML page with the plots a person
reads: the reliability diagram, PSI per feature, and the score distribution now against training.
Figures are drawn without pyplot (as `model.plots.figures`) and inlined as PNG."""

from __future__ import annotations

import base64
import html
import io
from typing import TYPE_CHECKING, Any

from leadscore.model.policy import GRADES

if TYPE_CHECKING:
    from matplotlib.figure import Figure

_COLOURS = {"ok": "#2e7d32", "warn": "#ef6c00", "alert": "#c62828"}


def _png(fig: Figure) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    return f'<img alt="" src="data:image/png;base64,{base64.b64encode(buf.getvalue()).decode()}">'


def _reliability(cal: dict[str, Any]) -> str:
    from matplotlib.figure import Figure

    if not cal.get("deciles"):
        return ""
    fig = Figure(figsize=(5, 5))
    ax = fig.subplots()
    xs = [d["predicted"] for d in cal["deciles"]]
    ys = [d["observed"] for d in cal["deciles"]]
    top = max(max(xs), max(ys)) * 1.05 or 1
    ax.plot([0, top], [0, top], "--", color="grey", label="perfect")
    ax.plot(xs, ys, "o-", label=f"champion (ECE {cal['ece']:.3f})")
    ax.set(
        xlabel="predicted probability (decile mean)",
        ylabel="observed qualification rate",
        title=f"Reliability on {cal['n']} leads with a known outcome",
    )
    ax.legend()
    return _png(fig)


def _psi_bars(drift: dict[str, Any], thresholds: dict[str, Any]) -> str:
    from matplotlib.figure import Figure

    feats = drift.get("features") or {}
    if not feats:
        return ""
    names = sorted(feats, key=lambda k: feats[k]["psi"])[-25:]
    fig = Figure(figsize=(7, 0.28 * len(names) + 1.2))
    ax = fig.subplots()
    ax.barh(
        names,
        [feats[k]["psi"] for k in names],
        color=[_COLOURS.get(feats[k]["status"], "#9e9e9e") for k in names],
    )
    ax.axvline(thresholds["psi_warn"], color=_COLOURS["warn"], ls="--", label="warn")
    ax.axvline(thresholds["psi_alert"], color=_COLOURS["alert"], ls="--", label="alert")
    ax.set(
        xlabel="PSI against training", title=f"Input drift: the {len(names)} features with the largest PSI"
    )
    ax.legend(loc="lower right")
    return _png(fig)


def _score_bars(score: dict[str, Any], grades: dict[str, Any]) -> str:
    from matplotlib.figure import Figure

    if "training" not in score:
        return ""
    fig = Figure(figsize=(10, 3.6))
    ax, ax2 = fig.subplots(1, 2, gridspec_kw={"width_ratios": [3, 1]})
    e = [f"{100 * v:.1f}" for v in score["edges"]]
    labels = (
        [f"≤ {e[0]}", *[f"{lo}–{hi}" for lo, hi in zip(e[:-1], e[1:], strict=False)], f"> {e[-1]}"]
        if e
        else ["all"]
    )
    x = range(len(labels))  # the last bin (missing) is always empty for a score
    ax.bar([i - 0.2 for i in x], score["training"][: len(labels)], width=0.4, label="training")
    ax.bar([i + 0.2 for i in x], score["recent"][: len(labels)], width=0.4, label="window")
    ax.set_xticks(list(x), labels, rotation=30, ha="right", fontsize=8)
    ax.set(
        xlabel="score (training deciles)",
        ylabel="share of scores",
        title=f"Score distribution, PSI {score['psi']:.3f}",
    )
    ax.legend()
    if "training" in grades:
        g = range(len(GRADES))
        ax2.bar([i - 0.2 for i in g], [grades["training"][k] for k in GRADES], width=0.4, label="training")
        ax2.bar([i + 0.2 for i in g], [grades["recent"][k] for k in GRADES], width=0.4, label="window")
        ax2.set_xticks(list(g), GRADES)
        ax2.set(title=f"Grade mix, PSI {grades['psi']:.3f}")
    return _png(fig)


def _badge(status: str) -> str:
    colour = _COLOURS.get(status, "#616161")
    return f'<span class="badge" style="background:{colour}">{html.escape(status)}</span>'


def render(report: dict[str, Any]) -> str:
    """The report as a standalone HTML page."""
    c, t = report["checks"], report["thresholds"]
    m = report["model"]
    rows = "".join(
        f"<tr><th>{html.escape(name)}</th><td>{_badge(check['status'])}</td>"
        f"<td>{html.escape(str(check.get('message', '')))}</td></tr>"
        for name, check in c.items()
    )
    verdict = (
        (
            "<p class='alert'><strong>Retrain recommended.</strong> "
            + " ".join(html.escape(r) for r in report["reasons"])
            + "</p>"
        )
        if report["retrain_recommended"]
        else ("<p>No alert: the champion looks right for the recent leads.</p>")
    )
    feats = c["drift"].get("features") or {}
    feature_rows = "".join(
        f"<tr><td>{html.escape(k)}</td><td class='num'>{v['psi']:.3f}</td>"
        f"<td class='num'>{v['noise']:.3f}</td>"
        f"<td>{_badge(v['status'])}</td></tr>"
        for k, v in sorted(feats.items(), key=lambda kv: -kv[1]["psi"])
    )
    per_day = c["volume"].get("per_day", [])
    volume = " ".join(f"{d['day'][5:]}: {d['n']}" for d in per_day[-14:])
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Leadscore monitoring</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2rem auto; max-width: 1100px; color: #212121; }}
table {{ border-collapse: collapse; margin: 1rem 0; }} td, th {{ padding: .25rem .6rem; text-align: left;
border-bottom: 1px solid #e0e0e0; vertical-align: top; }} .num {{ text-align: right; }}
.badge {{ color: white; border-radius: 4px; padding: 0 .4rem; font-size: .85rem; white-space: nowrap; }}
.alert {{ background: #ffebee; padding: .6rem; border-left: 4px solid #c62828; }} img {{ max-width: 100%; }}
</style></head><body>
<h1>Is the champion still right? {_badge(report["status"])}</h1>
<p>Model {html.escape(str(m["name"]))} version {html.escape(str(m["version"]))}
({html.escape(str(m["family"]))}, trained {html.escape(str(m["trained_at"]))}); at
{html.escape(report["now"])}, over the last {report["window_days"]:g} days. What each figure means and
what to do: docs/monitoring.md.</p>
{verdict}
<table><thead><tr><th>Check</th><th>Status</th><th>What it found</th></tr></thead>
<tbody>{rows}</tbody></table>
<h2>Calibration</h2>
<p>Leads whose {m["horizon_days"]}-day horizon ended in the window, labelled by the training rules.</p>
{_reliability(c["calibration"])}
<h2>Input drift</h2>
{_psi_bars(c["drift"], t)}
{_score_bars(c["score"], c["grades"])}
<details><summary>PSI of every feature</summary>
<table><thead><tr><th>Feature</th><th class="num">PSI</th><th class="num">noise</th><th>Status</th></tr>
</thead>
<tbody>{feature_rows}</tbody></table></details>
<h2>Volume and feedback</h2>
<p>{html.escape(c["volume"].get("message", ""))}. Last days: {html.escape(volume)}</p>
<p>{html.escape(c["coverage"].get("message", ""))}</p>
</body></html>
"""
