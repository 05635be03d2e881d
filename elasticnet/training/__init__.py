"""Training with structural dropout: sub-net sampling, losses, metrics, BN calibration, the loop."""
