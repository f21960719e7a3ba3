"""Evaluation: metrics from the standard libraries, the ``kgrag eval`` harness, ablations and reports."""
