"""Data: the built-in synthetic polyp set, folder readers, augmentation, splits.

``build_datasets`` is imported lazily: the image readers (``elasticnet.data.imageio``) need no torch.
"""

__all__ = ["build_datasets"]


def __getattr__(name: str):
    if name == "build_datasets":
        from elasticnet.data.build import build_datasets

        return build_datasets
    raise AttributeError(f"module 'elasticnet.data' has no attribute {name!r}")
