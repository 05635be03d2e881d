"""Export: a sub-net cut from a checkpoint, written as a self-describing bundle a site can run.

- :mod:`~elasticnet.export.export`: the bundle (model file, ``model.json``, README), checked against PyTorch.
- :mod:`~elasticnet.export.onnx_export`, :mod:`~elasticnet.export.torch_export`: the model file writers.
- :mod:`~elasticnet.export.quantize`: static int8 quantisation with ONNX Runtime, checked on real images.
- :mod:`~elasticnet.export.measure`: latency and peak memory of one model file, in a fresh process.

The bundle format itself belongs to the site side (:mod:`elasticnet.site.bundle`).
"""
