"""Monitoring: is the champion still right? One function, `monitor`, computes everything that `leadscore
monitor`, GET /v1/monitoring, the Prometheus gauges and the sales page's calibration line show
(docs/monitoring.md says what each figure means and what to do about it).

It reads the store's score log (each score's feature values as the model got them) and feedback, and the
model's training histograms (`model.drift`). The champion re-scores the logged feature values, so the
figures are the champion's own even when older versions served the scores.

- **calibration**: the leads whose outcome is now known, labelled by the training rules
  (`features.labels.label_rows`: positive when a positive verdict falls in (as_of, as_of + horizon], a row
  counts only once its horizon has passed; a lead decided before it was scored is left out). The window is
  on the end of the horizon: scores whose as_of + horizon falls in the last `window` days. One row per
  (lead, as_of) as in training, and only leads stored in the service (a lead scored without being stored
  cannot get feedback, so it could only ever count as a negative).
- **drift**: PSI of every feature, of the score and of the grade mix, over the scores of the last `window`
  days, against the training histograms.
- **volume** (scores per day) and **coverage** (share of scored leads with a verdict).

A status per check: ok / warn / alert, "not enough data" below the minimum number of rows, "unknown" when
the model has no training histograms (trained before they were stored). Thresholds are in `Settings`
(`monitor_*`); a check warns or alerts only beyond what sampling alone would give on that many rows.

One module per part: `report` assembles the checks (`calibration`, `drift`, `activity`: volume and
coverage) read through `score_rows`; `status` says how statuses combine; `cache` keeps the service's
report per worker; `page` renders a report as an HTML page.
"""

from leadscore.serve.monitoring.cache import MonitorCache
from leadscore.serve.monitoring.report import monitor

__all__ = ["MonitorCache", "monitor"]
