"""The `sam3d-eval` command line: argument parsing, progress and printing. Nothing imports it."""
