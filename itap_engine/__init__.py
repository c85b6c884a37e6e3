"""ITAP engine: everything that is not screen.

Telemetry is simulated or imported, validated before storage, ingested idempotently
into SQL, turned into trailing-window features, scored by an unsupervised detector and
turned into explained alerts. This package never imports Textual; the console reaches
it through :mod:`itap_engine.facade`.
"""

__version__ = "0.1.0"
