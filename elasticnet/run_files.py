"""The names of the files in a run folder, in one place (torch-free): what ``train`` writes, ``--resume``,
``eval``, ``export``, ``tune`` and the paper scripts read."""

CHECKPOINT_NAME = "checkpoint.pt"  # the finished run: weights, config, table, calibrated BN statistics
STATE_NAME = "last.pt"  # the training state of an unfinished run (resume)
CONFIG_NAME = "config.yaml"  # the resolved config the run started with
SPLIT_NAME = "split.csv"  # every image's part (train/val/test) and group
LOG_NAME = "log.csv"  # one row per epoch
TABLE_NAME = "subnets.csv"  # the per-sub-net table (validation, test)
TABLE_MD_NAME = "subnets.md"
CURVE_NAME = "curve.png"
LOCK_NAME = ".lock"

# every file a training writes into its run folder (a new run refuses a folder that already holds any of them)
RUN_OUTPUTS = (CHECKPOINT_NAME, STATE_NAME, CONFIG_NAME, SPLIT_NAME, LOG_NAME, TABLE_NAME, TABLE_MD_NAME, CURVE_NAME)
