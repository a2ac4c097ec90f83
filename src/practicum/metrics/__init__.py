"""Metrics computed outside the fit loop's torchmetrics: multi-label summaries, BLEU."""
