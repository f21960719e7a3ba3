"""The causal knowledge graph: candidate edges from the docstore, refinement, audit and curation."""
