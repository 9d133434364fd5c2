"""Command-line interface (typer), a thin layer over the library.

Each command imports the library parts it uses inside its function, not at the top of its
module: ``lucyd --help`` (which imports every command module) must start in under a second, and
importing torch, scipy and the io stack takes several (measured: the command modules alone import
in ~0.5 s on the shared 2-core machine, without torch, scipy or matplotlib loaded).
"""
