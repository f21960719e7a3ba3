"""Training: image encoder and findings head, text projection, fusion weights, reward model; the saved retrieval model."""
