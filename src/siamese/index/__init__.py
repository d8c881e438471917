"""Index: a gallery of embeddings with ids and labels, searched with FAISS."""

from .gallery import Gallery

__all__ = ["Gallery"]
