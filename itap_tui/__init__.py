"""ITAP console: the Textual face of the engine.

It reaches the engine only through :class:`itap_engine.snapshot.EngineFacade`.
"""
