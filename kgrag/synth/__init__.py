"""Synthetic phantom corpus drawn from a known structural causal model."""
