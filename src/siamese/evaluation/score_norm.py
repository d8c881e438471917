"""Adaptive score normalisation (AS-norm; Matějka et al., Interspeech 2017) for cosine scores.

A trial's raw score s(e, t) is compared with how each side scores against a cohort of other
people (here: embeddings of the training speakers, never the test speakers): only the `top_k`
cohort scores closest to each side count, so that the normalisation adapts to the
neighbourhood each embedding lives in:

    s' = ((s - mu_e) / sigma_e + (s - mu_t) / sigma_t) / 2

where mu_e, sigma_e are the mean and standard deviation of e's top_k cohort scores (likewise
for t). It calibrates scores across speakers, which lowers the EER and minDCF of a single
threshold, and it costs one matrix product with the cohort per embedding.
"""

from __future__ import annotations

import numpy as np


def cohort_statistics(emb: np.ndarray, cohort: np.ndarray, top_k: int) -> tuple[np.ndarray,
                                                                               np.ndarray]:
    """(N, D) L2-normalised embeddings, (C, D) cohort -> the mean and std (N,) of each
    embedding's top_k cosine scores against the cohort."""
    if len(cohort) < 2:
        raise ValueError("AS-norm needs a cohort of at least 2 embeddings")
    k = min(top_k, len(cohort))
    s = emb @ cohort.T
    top = -np.partition(-s, k - 1, axis=1)[:, :k]
    return top.mean(axis=1), np.maximum(top.std(axis=1), 1e-6)


def as_norm(emb: np.ndarray, i: np.ndarray, j: np.ndarray, cohort: np.ndarray,
            top_k: int = 100) -> np.ndarray:
    """AS-norm scores of the trials (emb[i], emb[j]), cosine against `cohort`; every input
    L2-normalised here, so raw embeddings may be given."""
    def unit(x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=np.float64)
        return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)

    emb, cohort = unit(emb), unit(cohort)
    mu, sd = cohort_statistics(emb, cohort, top_k)
    s = np.einsum("nd,nd->n", emb[i], emb[j])
    return 0.5 * ((s - mu[i]) / sd[i] + (s - mu[j]) / sd[j])
