"""Export: a sub-net cut from a checkpoint, written as a self-describing bundle a site can run."""
