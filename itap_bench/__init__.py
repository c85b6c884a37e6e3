"""Everything ``itap bench`` runs. The product packages never import this package:
the ``bench`` command is registered through the ``itap.commands`` entry point."""
