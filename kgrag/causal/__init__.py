"""The causal model's math (noisy-OR CPDs, inference, likelihoods): pure Python, shared by the graph backends and the reference."""
