"""Entry point of the ``lucyd`` command."""

from __future__ import annotations

import typer

from lucyd.cli import (  # noqa: F401  (each module registers its commands on ``app``)
    cmd_bench,
    cmd_deconvolve,
    cmd_demo,
    cmd_denoise,
    cmd_evaluate,
    cmd_export,
    cmd_info,
    cmd_isotropic,
    cmd_predict,
    cmd_psf,
    cmd_restore,
    cmd_synth,
    cmd_train,
)
from lucyd.cli.app import app


@app.callback(invoke_without_command=True)
def _root(
    ctx: typer.Context,
    version: bool = typer.Option(False, "--version", help="Print the lucyd version and exit.", is_eager=True),
) -> None:
    """lucyd: physics-informed restoration of fluorescence microscopy images."""
    if version:
        import lucyd

        typer.echo(lucyd.__version__)
        raise typer.Exit()
    if ctx.invoked_subcommand is None:  # bare `lucyd`: the help, as before, exit 2
        typer.echo(ctx.get_help())
        raise typer.Exit(2)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
