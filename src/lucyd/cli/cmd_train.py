"""`lucyd train`: train a registered network (RLN by default) on raw/ + gt/ pairs."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from lucyd.cli.app import app, handle_errors
from lucyd.errors import InputError
from lucyd.validation import parse_float_tuple, parse_int_tuple


@app.command("train")
@handle_errors
def train_cmd(
    data: Path = typer.Option(
        ..., "--data", help="Folder with raw/ and gt/ (e.g. from lucyd synth)."
    ),
    output: Path = typer.Option(..., "-o", "--output", help="Model folder to write."),
    model: str = typer.Option("rln", "--model", help="Network name (rln, care, rcan, ...)."),
    steps: int = typer.Option(10_000, help="Optimiser steps (RLN: 10,000)."),
    patch: str | None = typer.Option(None, help="Patch shape z,y,x or y,x (default 64³ / 128²)."),
    batch: int | None = typer.Option(
        None, help="Patches per step (default: the network's, RLN 4)."
    ),
    lr: float | None = typer.Option(None, help="Initial learning rate (RLN: 0.015)."),
    schedule: str | None = typer.Option(
        None, help="Learning-rate schedule: exp, plateau, quarter or constant (RLN: exp)."
    ),
    lr_decay: float | None = typer.Option(
        None, "--lr-decay", help="Schedule factor (RLN: 0.95 per --lr-decay-steps)."
    ),
    lr_decay_steps: int | None = typer.Option(
        None, "--lr-decay-steps",
        help="exp: steps per decay factor (RLN: 600); plateau: validations without improvement.",
    ),
    target_scale: str = typer.Option(
        "own", "--target-scale",
        help="own: target normalised on its own (published recipes; outputs rescaled by the mean "
        "target/input range ratio); input: target divided by the input's range (flux per image).",
    ),
    ndim: int | None = typer.Option(
        None, "--ndim", min=2, max=3,
        help="2 or 3 (default: that of the data); --ndim 2 on volumes trains a 2D model on their planes.",
    ),
    loss: str | None = typer.Option(None, help="Loss name (rln, rln_local, mae, mse, laplace_nll, ddn)."),
    percentiles: str | None = typer.Option(
        None, help="Normalisation percentiles p_lo,p_hi (RLN: 0.01,99.5)."
    ),
    augment: bool | None = typer.Option(
        None, "--augment/--no-augment", help="Random flips and 90° rotations (RLN: off)."
    ),
    val_fraction: float = typer.Option(0.1, help="Share of the data held out for validation."),
    val_interval: int = typer.Option(200, help="Steps between validations / checkpoints."),
    val_patches: int = typer.Option(
        8, "--val-patches", min=1,
        help="Validation budget: central crops of up to N held-out images holding N patches' voxels.",
    ),
    threads: int | None = typer.Option(
        None, "--threads", min=1, help="CPU threads of torch during training (default: torch's)."
    ),
    patience: int | None = typer.Option(
        None, help="Early stopping after N validations without improvement."
    ),
    net_kwargs: str | None = typer.Option(
        None, "--net-kwargs", help="Network parameters as JSON, e.g. '{\"init_std\": 1}'."
    ),
    time_limit: float | None = typer.Option(
        None, help="Stop after this many seconds of training (checkpointed; --resume continues)."
    ),
    seed: int = typer.Option(0, help="Random seed."),
    device: str = typer.Option("auto", help="auto, cpu or cuda."),
    resume: bool = typer.Option(False, help="Continue an interrupted training in OUTPUT."),
    overwrite: bool = typer.Option(False, help="Replace a model already in OUTPUT."),
    ensemble: int | None = typer.Option(
        None, "--ensemble", min=1,
        help="Train K members with seeds seed, seed+1, ... into OUTPUT/member_00 ... plus "
        "OUTPUT/ensemble.json (deep ensemble; lucyd predict --uncertainty).",
    ),
) -> None:
    """Train a network (Li et al. 2022 RLN recipe by default) and write a model folder.

    OUTPUT receives config.json, model.json, best.pt, last.pt, log.jsonl and loss.png; with
    --ensemble K, one such folder per member (Lakshminarayanan et al. 2017).
    """
    from lucyd.io.outputs import check_output_path
    from lucyd.train import TrainConfig, train
    from lucyd.train.card import ModelCard

    check_output_path(output, [data], folder=True)

    kwargs = {}
    if net_kwargs:
        try:
            kwargs = json.loads(net_kwargs)
        except ValueError:
            raise InputError(f"--net-kwargs: not valid JSON: {net_kwargs!r}") from None
        if not isinstance(kwargs, dict):
            raise InputError("--net-kwargs: expected a JSON object")
    pct = parse_float_tuple(percentiles, "--percentiles") if percentiles else None
    if pct is not None and len(pct) != 2:
        raise InputError(f"--percentiles: expected two numbers, got {percentiles!r}")
    config = TrainConfig.build(
        model=model,
        net_kwargs=kwargs,
        steps=steps,
        patch=parse_int_tuple(patch, "--patch") if patch else None,
        batch=batch,
        lr=lr,
        schedule=schedule,
        lr_decay=lr_decay,
        lr_decay_steps=lr_decay_steps,
        ndim=ndim,
        target_scale=target_scale,
        loss=loss,
        norm_percentiles=pct,
        augment=augment,
        val_fraction=val_fraction,
        val_interval=val_interval,
        val_patches=val_patches,
        threads=threads,
        patience=patience,
        time_limit_s=time_limit,
        seed=seed,
        device=device,
    )
    if ensemble is not None:
        from lucyd.train.ensemble import train_ensemble

        out = train_ensemble(config, data, output, ensemble, resume=resume, overwrite=overwrite)
        typer.echo(f"trained an ensemble of {ensemble} {config.model} networks (seeds {seed}.."
                   f"{seed + ensemble - 1}) -> {out}")
        return
    out = train(config, data, output, resume=resume, overwrite=overwrite)
    card = ModelCard.read(out)
    t = card.training
    extra = (
        f", best validation PSNR {t.best_val_psnr:.2f} dB at step {t.best_step}"
        if t.best_val_psnr is not None
        else ""
    )
    typer.echo(
        f"trained {card.network.name} ({card.network.parameters} parameters) "
        f"for {t.steps_done} steps{extra} -> {out}"
    )
    if not card.complete:
        typer.echo(f"warning: {card.incomplete_message(out)}", err=True)
