"""How ITAP is run: the command line, ``--once`` for cron, the commands and the
renderers (Rich tables, the HTML report)."""
