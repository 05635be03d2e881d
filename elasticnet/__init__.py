"""elasticnet: elastic U-Nets for medical image segmentation.

Train one large U-Net with structural dropout; cut out, without retraining, the sub-net (depth, width)
that fits a site's computer.
"""

__version__ = "0.1.0"

from elasticnet.models import ElasticUNet, ElasticUNetConfig, SubNet, UNet, UNetConfig, extract  # noqa: E402

__all__ = ["ElasticUNet", "ElasticUNetConfig", "SubNet", "UNet", "UNetConfig", "extract", "__version__"]
