"""FAISS indexes of the text, image and fused spaces."""
