"""Command-line interface (typer), a thin layer over the library."""
