"""Causal knowledge graph: the only package that talks to a graph engine."""
