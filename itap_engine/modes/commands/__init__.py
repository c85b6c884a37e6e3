"""One module per ``itap`` subcommand: ``HELP``, ``add_arguments(parser)``, ``run(args, settings)``."""
