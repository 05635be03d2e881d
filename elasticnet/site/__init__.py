"""What a site runs: an exported bundle on ONNX Runtime, without torch.

``pip install elasticnet[site]`` brings numpy, OpenCV and ONNX Runtime only; this package imports
nothing else (tested). :class:`~elasticnet.site.model.SiteModel` loads a bundle and predicts masks;
:func:`~elasticnet.site.predict.predict_files` turns files and folders into masks, overlays and a CSV.
"""
