"""edgetorch.schemas: the program format (program.fbs) and its generated bindings."""
