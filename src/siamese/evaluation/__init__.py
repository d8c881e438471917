"""Evaluation: verification, few-shot episodes, retrieval (pure functions on scores/embeddings)."""
