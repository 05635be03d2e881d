"""Hyper-parameter search over elastic trainings with Optuna (TPE, asynchronous parallel workers).

- :mod:`~elasticnet.tune.space`: the search space (YAML ``search:`` section, or defaults) and sampling.
- :mod:`~elasticnet.tune.objective`: what a finished or running trial is worth (Dice of a sub-net, FLOPs).
- :mod:`~elasticnet.tune.storage`: journal-file or database storage, and the study's claim lock.
- :mod:`~elasticnet.tune.worker`: one worker's loop: recover dead trials, ask, train, tell.
- :mod:`~elasticnet.tune.summary`: best trials, parameter importances, history (CSV + PNG).
"""
