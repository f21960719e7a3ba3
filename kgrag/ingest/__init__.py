"""Corpus ingest: readers, sections, concept extraction, images, docstore."""
