"""Demo CRM data: a simulator with a known generative model and its exact ground-truth oracle.

``leadscore.demo.generate.generate`` writes leads/events/outcomes parquet files plus ground truth;
``leadscore.demo.oracle.oracle_probabilities`` gives the exact probability of a qualification within a
horizon, from the observable data (``observable``) and from the true hidden state (``hidden``).
See docs/demo-data.md.
"""
