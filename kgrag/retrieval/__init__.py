"""Multimodal retrieval: encoders, training, FAISS indexes, rerank stages, pipeline."""
