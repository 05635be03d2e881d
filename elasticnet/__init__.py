"""elasticnet: elastic U-Nets for medical image segmentation.

Train one large U-Net with structural dropout; cut out, without retraining, the sub-net (depth, width)
that fits a site's computer.

Names are imported lazily, so loading an exported static U-Net never imports the elastic code.
"""

__version__ = "0.1.0"

__all__ = ["ElasticUNet", "ElasticUNetConfig", "SubNet", "UNet", "UNetConfig", "__version__", "extract"]


def __getattr__(name: str):
    if name in __all__:
        from elasticnet import models

        return getattr(models, name)
    raise AttributeError(f"module 'elasticnet' has no attribute {name!r}")
