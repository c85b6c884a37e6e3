"""Detection: trailing-window features, the detector registry, thresholds, model
files, the streaming scorer and alerts."""
