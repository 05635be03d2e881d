"""Choosing and preparing the sub-net for a site: profiling on the site's machine, budgets, int8.

- :mod:`~elasticnet.deploy.measure`: latency and peak memory of one model file, in a fresh process.
- :mod:`~elasticnet.deploy.profile`: every sub-net of a checkpoint measured, with its stored Dice.
- :mod:`~elasticnet.deploy.budget`: the most accurate sub-net within a latency/FLOPs/params/memory budget.
- :mod:`~elasticnet.deploy.pareto`: the Pareto front (Dice vs latency) and its plot.
- :mod:`~elasticnet.deploy.quantize`: static int8 quantisation with ONNX Runtime, checked on real images.
"""
