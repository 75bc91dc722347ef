"""`leadscore table`: train and evaluate on a flat one-row-per-lead export (see issue: leakage audit)."""
