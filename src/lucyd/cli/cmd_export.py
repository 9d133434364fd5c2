"""`lucyd export`: a trained model folder as a bioimage.io model package (zip)."""

from __future__ import annotations

from pathlib import Path

import typer

from lucyd.cli.app import app, handle_errors


@app.command("export")
@handle_errors
def export_cmd(
    model: Path = typer.Argument(..., help="Model folder written by lucyd train."),
    output: Path = typer.Option(..., "-o", "--output", help="The package, a .zip file."),
    sample: Path | None = typer.Option(
        None, help="Image to cut the test tensors from (default: the training data's "
        "validation image)."
    ),
    name: str | None = typer.Option(None, help="Package name (default: lucyd NET ND FOLDER)."),
    author: list[str] | None = typer.Option(
        None, "--author", help="Author name (repeat for several; default: your login name)."
    ),
    license: str = typer.Option("CC-BY-4.0", help="SPDX license of the weights."),
    test: bool = typer.Option(
        True, "--test/--no-test",
        help="Run bioimageio.core's test of the written package (as `bioimageio test`).",
    ),
) -> None:
    """Write MODEL as a bioimage.io model package (spec 0.5) with TorchScript and state-dict weights.

    The package's input is normalised with the model's percentiles (scale_range); its output is
    in the input's normalised units (0 = the input's low percentile, 1 = its high one), since a
    bioimage.io post-processing cannot map back through the input's percentiles. `lucyd predict
    PACKAGE.zip IN -o OUT` restores in the input's intensity units, exactly as MODEL does.
    """
    from lucyd.errors import LucydError
    from lucyd.export.bioimageio import bioimageio_test, export_bioimageio

    out = export_bioimageio(model, output, sample=sample, name=name, authors=author or None,
                            license=license)
    typer.echo(f"exported {model} -> {out}")
    if test:
        summary = bioimageio_test(out)
        if summary.status != "passed":
            raise LucydError(f"{out}: bioimageio test {summary.status}; run `bioimageio test "
                             f"{out}` for the report")
        typer.echo(f"bioimageio test: {summary.status}")
