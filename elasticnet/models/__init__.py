"""Models: the static U-Net, the elastic U-Net, and the surgery between them."""

from elasticnet.models.complexity import count_flops, count_params
from elasticnet.models.elastic_unet import ElasticUNet, ElasticUNetConfig
from elasticnet.models.extract import extract, subnet_config
from elasticnet.models.subnet import SubNet, level_channels
from elasticnet.models.unet import UNet, UNetConfig

__all__ = [
    "ElasticUNet",
    "ElasticUNetConfig",
    "SubNet",
    "UNet",
    "UNetConfig",
    "count_flops",
    "count_params",
    "extract",
    "level_channels",
    "subnet_config",
]
