"""Telemetry in: sources (the simulator, CSV files), validation, and the pipeline
that validates, stores and quarantines with full accounting."""
