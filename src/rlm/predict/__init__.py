"""From samples to answers: per-input summaries (``summary``: median and intervals, scored per
objective), split-conformal interval calibration (``calibration``), regression metrics
(``metrics``) and plots (``plots``, needs matplotlib). Torch-free.

This ``__init__`` imports nothing, so ``rlm.predict.metrics`` does not pull in the others.
"""
