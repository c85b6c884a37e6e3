"""Renderers: Rich console helpers and the self-contained HTML report."""
