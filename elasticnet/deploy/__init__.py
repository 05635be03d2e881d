"""Choosing the sub-net for a site: profiling on the site's machine, budgets, the Pareto front.

- :mod:`~elasticnet.deploy.profile`: every sub-net of a checkpoint measured, with its stored Dice.
- :mod:`~elasticnet.deploy.budget`: the most accurate sub-net within a latency/FLOPs/params/memory budget.
- :mod:`~elasticnet.deploy.pareto`: the Pareto front (Dice vs latency) and its plot.

It builds on :mod:`elasticnet.export` (which writes, quantises and measures one model file), never the reverse.
"""
