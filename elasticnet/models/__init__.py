"""Models: the static U-Net, the elastic U-Net, and the surgery between them.

Names are imported lazily (``elasticnet.models.unet`` alone needs none of the elastic code).
"""

from importlib import import_module

_WHERE = {
    "ElasticUNet": "elastic_unet",
    "ElasticUNetConfig": "config",
    "SubNet": "subnet",
    "level_channels": "subnet",
    "UNet": "unet",
    "UNetConfig": "unet",
    "count_flops": "complexity",
    "count_params": "complexity",
    "extract": "surgery",
    "subnet_config": "surgery",
}
__all__ = sorted(_WHERE)


def __getattr__(name: str):
    if name in _WHERE:
        return getattr(import_module(f"elasticnet.models.{_WHERE[name]}"), name)
    raise AttributeError(f"module 'elasticnet.models' has no attribute {name!r}")
