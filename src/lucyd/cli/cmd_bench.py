"""``lucyd bench``: methods x data sets (synthetic and real) and the breaking-point curves."""

from __future__ import annotations

import shlex
from pathlib import Path

import typer

from lucyd.cli.app import app, fail, handle_errors
from lucyd.cli.cmd_demo import wide_console


def _parse_models(items: list[str] | None) -> dict[str, str]:
    models: dict[str, str] = {}
    for item in items or []:
        label, sep, path = item.partition("=")
        if not sep or not label.strip() or not path.strip():
            fail(f"--model: expected LABEL=FOLDER (e.g. RLN=demo/model), got {item!r}")
        models[label.strip()] = path.strip()
    return models


@app.command("bench")
@handle_errors
def bench(
    suite: str = typer.Option("synthetic", "--suite",
                              help="synthetic, real (../shared/data/real) or all."),
    out: Path = typer.Option(Path("lucyd-bench"), "-o", "--out",
                             help="Output folder (bench.json, bench.csv, report.html, PNGs)."),
    quick: bool = typer.Option(False, "--quick", help="Small sizes and budgets (a few minutes)."),
    seed: int = typer.Option(0, "--seed", min=0, help="Base random seed."),
    device: str = typer.Option("auto", "--device", help="auto (CUDA when present), cpu or cuda."),
    networks: str | None = typer.Option(
        None, "--networks",
        help="Networks to train once, comma-separated (default: rln,ddn,care; quick: rln); "
             "'none' for none."),
    methods: str | None = typer.Option(
        None, "--methods",
        help="Registered restoration methods to compare, comma-separated (default: "
             "raw,rl,wb-rl; see lucyd.methods.available_methods, e.g. rl-biggs, gaussian)."),
    steps: int | None = typer.Option(None, "--steps", min=1,
                                     help="Training steps of every network (equal budget)."),
    model: list[str] | None = typer.Option(
        None, "--model",
        help="An already trained model to include, LABEL=FOLDER (repeatable). "
             "RLN-dapi=FOLDER is used for the real dapi resolution comparison."),
) -> None:
    """Benchmark raw / RL / Wiener–Butterworth RL / networks on synthetic and real data.

    Writes a methods x data sets table (PSNR, SSIM, NRMSE, time, parameters), the
    'push it until it breaks' curves (quality against photon count and blur width) and, for
    the real suite, RL's agreement with deconwolf reference outputs, ground-truth-free
    resolution estimates and W2S denoising, into OUT/report.html, bench.json and bench.csv.
    """
    from lucyd.device import resolve_device
    from lucyd.errors import InputError
    from lucyd.pipelines.bench import SUITES, BenchConfig, run_bench, table_rows
    from lucyd.report import print_metrics_table

    if suite not in SUITES:
        raise InputError(f"--suite: unknown suite {suite!r}; choose one of {', '.join(SUITES)}")
    resolve_device(device)
    nets = None
    if networks is not None:
        nets = tuple(n.strip().lower() for n in networks.split(",") if n.strip())
        nets = () if nets == ("none",) else nets
        from lucyd.nets import available_networks

        unknown = [n for n in nets if n not in available_networks()]
        if unknown:
            raise InputError(f"--networks: unknown network(s) {', '.join(unknown)}; available: "
                             f"{', '.join(available_networks())}")
    models = _parse_models(model)
    chosen = (tuple(m.strip().lower() for m in methods.split(",") if m.strip())
              if methods is not None else None)
    cfg = BenchConfig.preset(suite, quick, seed=seed, device=device, networks=nets,
                             train_steps=steps, models=models or None, methods=chosen)
    parts = ["lucyd", "bench", "--suite", suite, "-o", str(out)] + (["--quick"] if quick else [])
    parts += ["--seed", str(seed)] + (["--device", device] if device != "auto" else [])
    parts += ["--networks", networks] if networks is not None else []
    parts += ["--methods", methods] if methods is not None else []
    parts += ["--steps", str(steps)] if steps else []
    for m in model or []:
        parts += ["--model", m]
    result = run_bench(config=cfg, out_dir=out, command=" ".join(shlex.quote(p) for p in parts))
    for name in ("synthetic", "real"):
        rows = table_rows(result["rows"], name)
        if rows:
            print_metrics_table(rows, title=f"lucyd bench: {name}", console=wide_console())
    typer.echo(f"report: {result['report']}")
