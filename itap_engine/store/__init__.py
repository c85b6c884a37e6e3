"""Storage: the SQL store (the only module that writes SQL), its schema, the
read-model queries and the watermark keys."""
