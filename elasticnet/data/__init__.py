"""Data: the built-in synthetic polyp set, folder readers, augmentation, splits."""

from elasticnet.data.build import build_datasets

__all__ = ["build_datasets"]
