"""One insight per lead, the same whether a request's few leads or a batch chunk of thousands ask."""

from __future__ import annotations

import numpy as np
from leadscore.model.insights import MANY_ROWS, Insights


def test_many_rows_get_the_insight_each_row_gets_alone():
    # given learned rates over two categorical features (one value far above, one far below, one near the
    # overall rate) and rows with known, unseen, missing (None, NaN) and non-text values
    learned = {
        "overall": 0.12,
        "by_value": {
            "industry": {"finance": 0.31, "retail": 0.04, "media": 0.13},
            "country": {"DE": 0.30, "FR": 0.02},
        },
    }
    insights = Insights(learned, categorical=("industry", "country"))
    rng = np.random.default_rng(0)
    n = MANY_ROWS + 500
    industry = rng.choice(
        np.array(["finance", "retail", "media", "mining", None, np.nan, 7], dtype=object), n
    )
    country = rng.choice(np.array(["DE", "FR", "US", None], dtype=object), n)
    values = {"industry": industry, "country": country}
    # when a batch's many rows, a request's few rows and each row alone ask
    many = insights.of(values, n)
    few = insights.of({k: v[:50] for k, v in values.items()}, 50)
    alone = [insights.one({"industry": i, "country": c}) for i, c in zip(industry, country, strict=True)]
    # then every row reads the same insight, and the rule picked the strongest value beyond 1.5x
    assert many == alone and few == alone[:50]
    assert "Leads with country FR qualify at 2 % against 12 % overall" in set(many)
    assert None in set(many) and len(set(many)) > 3
