"""Training: a plain loop (Trainer) plus callbacks."""
