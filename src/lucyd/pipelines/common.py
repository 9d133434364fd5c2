"""Helpers shared by the demo and the benchmark: stage messages, resumable state, JSON output,
locating the real data, seeds and the quality measurements of one restoration."""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import sys
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console

from lucyd.errors import InputError
from lucyd.io.atomic import atomic_path
from lucyd.metrics import evaluate, resolution

#: environment variable that points at the real-data folder (``../shared/data/real``)
REAL_DATA_ENV = "LUCYD_REAL_DATA"


def real_data_dir(folder: str | Path | None = None) -> Path:
    """Folder of the real microscopy data: ``folder``, else ``$LUCYD_REAL_DATA``, else
    ``../shared/data/real`` relative to the current working directory (the project layout:
    commands are run from the project root, the shared data beside it).

    Nothing here depends on where lucyd is installed. The folder may not exist (a fresh
    install): callers check and skip with a message naming this folder and how to set it.
    """
    if folder is not None:
        return Path(folder).expanduser()
    env = os.environ.get(REAL_DATA_ENV)
    if env:
        return Path(env).expanduser()
    return Path.cwd().parent / "shared" / "data" / "real"


def child_seeds(seed: int, names: list[str]) -> dict[str, int]:
    """Independent integer seeds per named stage, derived with ``SeedSequence(seed).spawn``.

    The seed of a name depends only on ``seed`` and the name's position in ``names``, so a
    pipeline draws the same numbers for the same stage whatever else it does.
    """
    children = np.random.SeedSequence(int(seed)).spawn(len(names))
    return {n: int(c.generate_state(1, np.uint32)[0]) for n, c in zip(names, children, strict=True)}


def write_json(path: str | Path, payload: Any) -> Path:
    """Write ``payload`` as indented JSON, atomically (NaN written as null)."""
    path = Path(path)
    text = json.dumps(_jsonable(payload), indent=2, allow_nan=False)
    with atomic_path(path) as tmp:
        tmp.write_text(text + "\n", encoding="utf-8")
    return path


def _jsonable(obj):
    if isinstance(obj, Mapping):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, np.ndarray):
        return _jsonable(obj.tolist())
    return obj


def config_digest(payload: Mapping) -> str:
    """Short SHA-256 of a JSON-able mapping (key order independent)."""
    text = json.dumps(_jsonable(payload), sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


class Stages:
    """Messages for the stages of a pipeline, on stderr, with their wall-clock times.

    Parameters
    ----------
    total : int
        Number of stages (shown as ``[i/total]``).
    verbose : bool
        Print the messages (the parts' own progress bars are controlled separately).
    """

    def __init__(self, total: int, verbose: bool = True):
        self.total = total
        self.verbose = verbose
        self.index = 0
        self.times: dict[str, float] = {}
        self._console = None
        if verbose:
            self._console = Console(file=sys.stderr, highlight=False)

    def say(self, text: str) -> None:
        """Print one line (rich markup allowed)."""
        if self._console is not None:
            self._console.print(text, soft_wrap=True)

    @contextlib.contextmanager
    def stage(self, key: str, text: str, *, skipped: bool = False) -> Iterator[None]:
        """Context of one stage: announces it, times it, reports done / reused."""
        self.index += 1
        tag = f"[{self.index}/{self.total}]"
        if skipped:
            self.say(f"[dim]{tag} {text}: reused from a previous run[/dim]")
            self.times.setdefault(key, 0.0)
            yield
            return
        self.say(f"[bold cyan]{tag}[/bold cyan] {text} ...")
        t0 = time.perf_counter()
        yield
        dt = time.perf_counter() - t0
        self.times[key] = dt
        self.say(f"[green]    done[/green] in {dt:.1f} s")


class StageState:
    """Which stages of a pipeline have completed for a given configuration (resume support).

    Stored as ``<out_dir>/.state.json``: the configuration digest and, per finished stage, a
    small JSON record (timings, file names). A different configuration starts afresh.
    """

    def __init__(self, out_dir: Path, digest: str):
        self.path = Path(out_dir) / ".state.json"
        self.digest = digest
        self.records: dict[str, dict] = {}
        self.resumed = False
        try:
            old = json.loads(self.path.read_text())
        except (OSError, ValueError):
            old = None
        if (isinstance(old, dict) and old.get("digest") == digest
                and isinstance(old.get("stages"), dict)):
            self.records = old["stages"]
            self.resumed = bool(self.records)

    def done(self, stage: str, *files: Path) -> bool:
        """True when ``stage`` finished for this configuration and its files still exist."""
        return stage in self.records and all(Path(f).exists() for f in files)

    def record(self, stage: str, **info) -> None:
        """Mark ``stage`` finished (written atomically at once)."""
        self.records[stage] = _jsonable(info)
        write_json(self.path, {"digest": self.digest, "stages": self.records})

    def get(self, stage: str) -> dict:
        return dict(self.records.get(stage, {}))


class StageRunner:
    """Runs the stages of a resumable pipeline from declarations (:class:`Stages` messages,
    :class:`StageState` records): a finished stage whose files exist is *loaded*, any other
    is *computed* and recorded.
    """

    def __init__(self, stages: Stages, state: StageState):
        self.stages = stages
        self.state = state

    def run(self, key: str, text: str, *, compute, load=None, files=(), record=None):
        """Run stage ``key`` and return its value.

        Parameters
        ----------
        key, text : str
            State key and message of the stage.
        compute : callable
            ``compute() -> value``: does the work and writes ``files``.
        load : callable, optional
            ``load(record) -> value`` for a finished stage (``record`` the dict saved by
            ``record``); None: the stage has no value to reload (returns None).
        files : sequence of Path
            Outputs that must still exist for the stage to count as finished.
        record : callable, optional
            ``record(value) -> dict`` saved with the stage (timings, small facts).
        """
        done = self.state.done(key, *files)
        with self.stages.stage(key, text, skipped=done):
            if done:
                return load(self.state.get(key)) if load is not None else None
            value = compute()
            self.state.record(key, **(record(value) if record is not None else {}))
            return value


def timed(func, *args, **kwargs) -> tuple[np.ndarray, float]:
    """``(float32 result, seconds)`` of one call of ``func`` (wall clock, ``perf_counter``)."""
    t0 = time.perf_counter()
    out = func(*args, **kwargs)
    return np.asarray(out, dtype=np.float32), time.perf_counter() - t0


def repeat_time(func, repeats: int, *, reduce: str = "median", sync=None) -> float:
    """Seconds per call of ``func()`` over ``repeats`` runs after one warm-up run.

    ``reduce``: ``"median"`` or ``"min"`` (the best run: least disturbed by other load).
    ``sync``: called after each run before the clock stops (e.g. ``torch.cuda.synchronize``).
    """
    if reduce not in ("median", "min"):
        raise InputError(f"reduce: expected 'median' or 'min', got {reduce!r}")
    sync = sync or (lambda: None)
    func()  # warm-up (allocations, kernel selection, caches)
    sync()
    times = []
    for _ in range(max(1, int(repeats))):
        t0 = time.perf_counter()
        func()
        sync()
        times.append(time.perf_counter() - t0)
    return float(np.median(times) if reduce == "median" else min(times))


def check_out_dir(out_dir: str | Path) -> Path:
    """Create ``out_dir`` (a folder) or raise :class:`InputError` when it is a file."""
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise InputError(f"output folder: {out} exists and is not a folder")
    out.mkdir(parents=True, exist_ok=True)
    return out


def resolution_summary(image: np.ndarray, voxel_size) -> dict[str, Any]:
    """Ground-truth-free lateral resolution: one-image FRC and decorrelation analysis.

    Returns ``{"frc_um", "frc_status", "decorr_um", "decorr_status"}`` (µm; NaN when
    unmeasurable; status ``"ok"``, ``"nyquist"`` (upper bound) or ``"no-correlation"``).
    """
    out: dict[str, Any] = {}
    for key, method in (("frc", "frc"), ("decorr", "decorrelation")):
        try:
            r = resolution(image, voxel_size, method=method)
            value = r.get("resolution_um")
            out[f"{key}_um"] = float(value) if value is not None else float(r["resolution_px"])
            out[f"{key}_status"] = str(r.get("status", "ok"))
        except InputError as exc:  # too small an image
            out[f"{key}_um"] = math.nan
            out[f"{key}_status"] = f"n/a ({exc})"
    return out


def quality(pred: np.ndarray, gt: np.ndarray) -> dict[str, float]:
    """PSNR / SSIM / NRMSE of ``pred`` against ``gt`` by :func:`lucyd.metrics.evaluate`
    (percentile-normalised ground truth, affinely fitted prediction; Weigert et al. 2018)."""
    return {k: float(v) for k, v in evaluate(pred, gt).items()}


def fmt_um(value) -> str:
    """``0.254 µm`` or ``n/a``."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        return "n/a"
    return f"{v:.3f} µm" if math.isfinite(v) else "n/a"
