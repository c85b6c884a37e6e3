"""The console's one door into the engine: one snapshot assembler, used by the
in-process facade and by the facade attached to another process's database."""
