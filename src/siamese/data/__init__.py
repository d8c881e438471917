"""Data: labeled data sets, image reading, splits, samplers and augmentation."""
