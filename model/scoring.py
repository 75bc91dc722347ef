"""`ScoringModel`: everything needed to turn features into a calibrated score with exact reasons.

It holds the encoder, the explainer of one model family (scorecard tables or compiled trees), the Platt
calibration, the handoff policy and the qualified-lead definition. Scoring is numpy only: the same object
serves a single live request, a batch of a million leads and the MLflow pyfunc.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cached_property
from typing import Any, Literal

import numpy as np
from leadscore.features.labels import QualifiedDefinition
from leadscore.model.boosted import CompiledTrees
from leadscore.model.calibration import Platt, sigmoid
from leadscore.model.encoding import Encoder
from leadscore.model.exploration import NONE, Exploration, handoff
from leadscore.model.inputs import Leads, feature_snapshots, lead_values
from leadscore.model.insights import Insights
from leadscore.model.policy import HandoffPolicy
from leadscore.model.ranges import Checks
from leadscore.model.reasons import top_reasons
from leadscore.model.scorecard import Scorecard
from leadscore.model.sentences import SentenceCache, display_value

Family = Literal["scorecard", "boosted"]


@dataclass(frozen=True)
class Explained:
    """Calibrated log-odds, split exactly: logit == base + contributions.sum(1)."""

    X: np.ndarray
    base: float
    contributions: np.ndarray
    logit: np.ndarray

    @property
    def probability(self) -> np.ndarray:
        return sigmoid(self.logit)


@dataclass(frozen=True)
class Scored:
    """What `ScoringModel.score` gives: one API result per lead, in the order sent, with the moment each
    was scored as of and the features the model was given (`snapshots`: as the score log keeps them)."""

    results: list[dict[str, Any]]
    as_of: list[Any]
    values: dict[str, np.ndarray]
    features: tuple[str, ...]

    def snapshots(self) -> list[dict[str, Any]]:
        return feature_snapshots(self.values, self.features)


def raw_contributions(
    explainer: Scorecard | CompiledTrees, X: np.ndarray, encoder: Encoder
) -> tuple[float, np.ndarray]:
    """(base, contributions) in uncalibrated log-odds of encoded rows `X`, for either family: what Platt
    calibrates in training and what `ScoringModel.explain` scales."""
    if isinstance(explainer, Scorecard):
        return explainer.contributions(X, encoder)
    return explainer.contributions(X)


@dataclass
class ScoringModel:
    family: Family
    encoder: Encoder
    explainer: Scorecard | CompiledTrees
    calibration: Platt
    policy: HandoffPolicy
    definition: QualifiedDefinition
    info: dict[str, Any] = field(
        default_factory=dict
    )  # trained_at, metrics, insights, distributions, ranges, example
    name: str = "leadscore"
    version: str | None = None

    def raw(self, X: np.ndarray) -> tuple[float, np.ndarray]:
        return raw_contributions(self.explainer, X, self.encoder)

    def explain(self, values: Mapping[str, np.ndarray]) -> Explained:
        """Features (name -> one value per row) to exact calibrated contributions: the encoder (its lookups
        built once), the family's explainer (scorecard points or tree paths, each one compiled loop over
        arrays built once per model), then the Platt calibration."""
        X = self.encoder.transform(values)
        base_raw, C_raw = self.raw(X)
        a, b = self.calibration.a, self.calibration.b
        C = a * C_raw
        base = a * base_raw + b
        return Explained(X=X, base=base, contributions=C, logit=base + C.sum(axis=1))

    @cached_property
    def sentences(self) -> SentenceCache:
        """Reason sentences of this model's (feature, value) pairs, rendered once."""
        return SentenceCache(self.encoder)

    @cached_property
    def checks(self) -> Checks:
        """This model's training ranges and quiet values as arrays (`model.ranges`), built once."""
        return Checks(self.encoder, self.info)

    @cached_property
    def insights(self) -> Insights:
        """This model's insights (`model.insights`), each distinct combination decided once."""
        return Insights(self.info.get("insights"), self.encoder.categorical)

    def display(self, j: int, x: float) -> object:
        """Feature j's encoded value x as reasons show it."""
        return display_value(self.encoder, self.encoder.features[j], x)

    def out_of_range(self, values: Mapping[str, np.ndarray]) -> list[list[dict[str, Any]]]:
        """Per row, the values outside the range this model learned from (the API's `out_of_range`)."""
        X = self.encoder.transform(values)
        return self.checks.flags(X, self.checks.outside(X), self.display)

    def handoff(
        self, p: np.ndarray, lead_ids: Sequence[object] | np.ndarray, exploration: Exploration = NONE
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(handed over, explored, propensity) of leads scored `p` under this model's policy and
        `exploration` (`model.exploration.handoff`)."""
        return handoff(p, lead_ids, self.policy, exploration)

    def score(
        self,
        leads: Leads,
        as_of: datetime | str | None = None,
        *,
        explain_full: bool = False,
        exploration: Exploration = NONE,
    ) -> Scored:
        """The one way leads are scored (the API, `leadscore import`, the pyfunc, the smoke test).

        `leads`: lead mappings (`lead_id`, `created_at`, `attributes`, `events`, optionally their own
        `as_of`) or a frame of them (the pyfunc's input; a flat model's export rows). Each lead is scored
        as of its own `as_of`, else `as_of` (default: now), on the live feature path (`model.inputs`)."""
        moment = datetime.now(UTC) if as_of is None else as_of
        lv = lead_values(leads, moment, self.info.get("flat") if self.info.get("input") == "flat" else None)
        results = self.results(lv.values, lv.lead_ids, explain_full=explain_full, exploration=exploration)
        return Scored(results, lv.as_of, lv.values, self.encoder.features)

    def smoke_test(self) -> None:
        """Score this model's own example lead with the whole path (features, reasons, sentences,
        insight): refuse (ValueError) a model whose output is not a sane probability, whose explanation
        does not add up or that cannot give reasons; a served model is then warm (numba kernels compiled)."""
        example = (self.info.get("example") or {}).get("leads")
        if not example:
            raise ValueError("model has no example to smoke-test with")
        lead = dict(example[0])
        lead.setdefault("lead_id", "smoke")
        result = self.score([lead], lead["created_at"], explain_full=True).results[0]
        p = result["probability"]
        if not np.isfinite(p) or not 0 <= p <= 1:
            raise ValueError(f"smoke score is not a probability: {p}")
        e = result["explanation"]
        if not np.isclose(e["base"] + sum(e["contributions"].values()), e["logit"], rtol=0, atol=1e-6):
            raise ValueError("explanation does not add up to the model output")

    def results(
        self,
        values: Mapping[str, np.ndarray],
        lead_ids: Sequence[str] | np.ndarray,
        explain_full: bool = False,
        exploration: Exploration = NONE,
        out_of_range: bool = True,
        reason_fields: bool = False,
    ) -> list[dict[str, Any]]:
        """One API result per lead: probability, score, grade, qualified (handed over: at or above the
        threshold, or drawn for exploration), explored, propensity, reasons, the values outside the training
        range (and all contributions). `out_of_range=False` leaves those values out (None): the score log
        does not keep them, and a bulk rescore of old leads spent a sixth of its time describing them.
        `reason_fields=True` gives each reason as the tuple of its `reasons.REASON_FIELDS` values, the form
        the score log stores, instead of a `Reason` (a bulk rescore made a dict of every reason only to take
        its values out again)."""
        ex = self.explain(values)
        p = ex.probability
        grades = self.policy.grade(p).tolist()
        handed, explored, propensity = self.handoff(p, lead_ids, exploration)
        qualified, explored, propensity = handed.tolist(), explored.tolist(), propensity.tolist()
        raw_values = {name: values[name] for name in self.encoder.categorical}
        checks = self.checks
        outside = checks.outside(ex.X)
        reasons = top_reasons(
            ex.contributions,
            ex.X,
            self.encoder,
            raw_values,
            sentences=self.sentences,
            hidden=checks.hidden(ex.X, outside),
            as_fields=reason_fields,
        )
        flags = checks.flags(ex.X, outside, self.display) if out_of_range else [None] * len(p)
        insights = self.insights.of(values, len(p))
        out = []
        for i, (lead_id, prob) in enumerate(zip(lead_ids, p.tolist(), strict=False)):
            r = {
                "lead_id": lead_id,
                "probability": prob,
                "score": int(round(100 * prob)),
                "grade": str(grades[i]),
                "qualified": qualified[i],
                "explored": explored[i],
                "propensity": propensity[i],
                "reasons": reasons[i],
                "insight": insights[i],
                "out_of_range": flags[i],
            }
            if explain_full:
                r["explanation"] = {
                    "base": float(ex.base),
                    "logit": float(ex.logit[i]),
                    "contributions": dict(
                        zip(self.encoder.features, ex.contributions[i].tolist(), strict=False)
                    ),
                }
            out.append(r)
        return out
