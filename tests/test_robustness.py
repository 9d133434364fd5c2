"""Bad and unusual inputs (issue 15): nothing lost, nothing silent.

Each test states the property that failed before the fix. The parametrised table
``BAD_INPUTS`` at the end is mirrored in docs/sections/90_robustness.md.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from lucyd.cli.main import app
from lucyd.errors import FileFormatError, InputError
from lucyd.io import ImageMetadata, read_image, write_image

REPO = Path(__file__).resolve().parents[1]


def cli(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


def _blob(shape=(12, 24, 24), centre=None, sigma=1.5, value=100.0, background=5.0):
    grids = np.meshgrid(*[np.arange(n) for n in shape], indexing="ij")
    centre = centre if centre is not None else [n // 2 for n in shape]
    r2 = sum((g - c) ** 2 for g, c in zip(grids, centre, strict=True))
    return (value * np.exp(-r2 / (2 * sigma**2)) + background).astype(np.float32)


@pytest.fixture
def files(tmp_path):
    image = _blob()
    psf = _blob((7, 9, 9), sigma=1.2, background=0.0)
    paths = {"image": tmp_path / "image.tif", "psf": tmp_path / "psf.tif"}
    write_image(paths["image"], image, ImageMetadata("ZYX", (0.3, 0.13, 0.13)))
    write_image(paths["psf"], psf, ImageMetadata("ZYX", (0.3, 0.13, 0.13)))
    return paths


# ------------------------------------------------------------------ item 10, issue 16.4


def test_version_flag_exits_zero():
    import lucyd

    result = cli("--version")
    assert result.exit_code == 0, result.output
    assert result.output.strip() == lucyd.__version__


def test_cli_start_up_imports_no_heavy_library():
    """`lucyd --help` and `lucyd info` must not pay for torch, scipy, matplotlib, zarr, tifffile."""
    heavy = ("torch", "scipy", "matplotlib", "zarr", "tifffile")
    code = f"import sys, lucyd.cli.main; print(','.join(m for m in {heavy!r} if m in sys.modules))"
    import lucyd

    env = dict(os.environ, PYTHONPATH=str(Path(lucyd.__file__).parents[1]))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                         check=True)
    assert out.stdout.strip() == ""


# ------------------------------------------------------------------ item 2: output is an input


def test_deconvolve_refuses_output_that_is_the_input(files):
    before = files["image"].read_bytes()
    result = cli("deconvolve", files["image"], "--psf", files["psf"], "-o", files["image"], "-q")
    assert result.exit_code == 2
    assert "is the input" in result.output
    assert files["image"].read_bytes() == before


def test_output_through_a_link_is_refused(files, tmp_path):
    link = tmp_path / "link.tif"
    link.symlink_to(files["image"])
    hard = tmp_path / "hard.tif"
    os.link(files["psf"], hard)
    for output in (link, hard, tmp_path / "sub" / ".." / "image.tif"):
        result = cli("deconvolve", files["image"], "--psf", files["psf"], "-o", output, "-q")
        assert result.exit_code == 2 and "is the input" in result.output, output


def test_every_command_refuses_output_that_is_an_input(files, tmp_path):
    from lucyd.io.outputs import check_output_path

    with pytest.raises(InputError, match="is the input"):
        check_output_path(tmp_path, [files["image"]])  # a folder output holding the input
    runs = [
        ("psf", "--from-beads", files["image"], "-o", files["image"]),
        ("isotropic", files["image"], "-o", files["image"], "--z-factor", "2"),
        ("predict", tmp_path / "no-model", files["image"], "-o", files["image"]),
        ("train", "--data", tmp_path, "-o", tmp_path),
        ("synth", "--psf", files["psf"], "-o", tmp_path, "--n", "1"),
    ]
    for args in runs:
        result = cli(*args)
        assert result.exit_code == 2, (args, result.output)
        assert "is the input" in result.output or "overwrite the PSF" in result.output, args


# ------------------------------------------------------------------ item 4: stale partials


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_rerun_removes_partials_of_killed_runs(files, tmp_path):
    out = tmp_path / "out.tif"
    stale = tmp_path / f".out.partial-{_dead_pid()}-0123abcd.tif"
    stale.write_bytes(b"x" * 1000)
    stale_zarr = tmp_path / f".out.partial-{_dead_pid()}-89abcdef.ome.zarr"
    stale_zarr.mkdir()
    (stale_zarr / "zarr.json").write_text("{}")
    alive = tmp_path / f".out.partial-{os.getpid()}-0123abcd.tif"  # a running writer: kept
    alive.write_bytes(b"y")
    result = cli("deconvolve", files["image"], "--psf", files["psf"], "-o", out, "-n", "2", "-q")
    assert result.exit_code == 0, result.output
    assert not stale.exists()
    assert stale_zarr.exists()  # another output's partial (out.ome.zarr) is not this one's
    assert alive.exists()
    write_image(tmp_path / "out.ome.zarr", np.ones((4, 4), np.float32))
    assert not stale_zarr.exists()


def test_sigterm_removes_the_partial_output(tmp_path):
    from lucyd.cli.app import handle_errors
    from lucyd.io import atomic_path

    seen = []

    @handle_errors
    def job():
        with atomic_path(tmp_path / "out.tif") as tmp:
            tmp.write_bytes(b"partial")
            seen.append(tmp)
            os.kill(os.getpid(), signal.SIGTERM)
            raise AssertionError("not reached: SIGTERM must interrupt the job")

    with pytest.raises(SystemExit) as exc:
        job()
    assert exc.value.code == 143
    assert seen and not seen[0].exists()
    assert list(tmp_path.iterdir()) == []


# ------------------------------------------------------------------ item 5: unwritable output


def test_unwritable_output_is_refused_before_computing(files, tmp_path, monkeypatch):
    import lucyd.deconv.api as api

    def no_compute(*args, **kwargs):
        raise AssertionError("computed before checking the output")

    monkeypatch.setattr(api, "run_rl", no_compute)
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    result = cli("deconvolve", files["image"], "--psf", files["psf"], "-o", blocker / "o.tif", "-q")
    assert result.exit_code == 2, result.output
    assert str(blocker / "o.tif") in result.output and "partial" not in result.output


def test_read_only_folder_is_refused_naming_the_users_path(files, tmp_path):
    from lucyd.io.outputs import check_output_path

    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o500)
    immutable = False
    try:
        probe = folder / "probe"
        try:
            probe.write_text("")
            probe.unlink()
            # root ignores permissions: make the folder immutable instead, if allowed
            immutable = subprocess.run(["chattr", "+i", str(folder)],
                                       capture_output=True).returncode == 0
            if not immutable:
                pytest.skip("cannot make a folder unwritable here (root without chattr)")
        except PermissionError:
            pass
        with pytest.raises(FileFormatError, match=str(folder / "o.tif")):
            check_output_path(folder / "o.tif", [files["image"]])
    finally:
        if immutable:
            subprocess.run(["chattr", "-i", str(folder)], check=False)
        folder.chmod(0o700)


def test_disk_room_is_checked_before_computing(files, tmp_path):
    from lucyd.io.outputs import check_output_path

    with pytest.raises(FileFormatError, match="free on that disk"):
        check_output_path(tmp_path / "huge.tif", [files["image"]], expected_bytes=10**18)
    check_output_path(tmp_path / "small.tif", [files["image"]], expected_bytes=10**3)


# ------------------------------------------------------------------ items 1 and 7: predict


@pytest.fixture(scope="module")
def model2d(tmp_path_factory):
    """A 2-step RLN on 2D pairs at voxel size (0.13, 0.13) µm (trained in ~1 s)."""
    from lucyd.train import TrainConfig, train

    root = tmp_path_factory.mktemp("model")
    rng = np.random.default_rng(0)
    for i in range(3):
        gt = _blob((48, 48), centre=rng.uniform(10, 38, 2), value=200.0, background=10.0)
        raw = rng.poisson(gt).astype(np.float32)
        meta = ImageMetadata("YX", (0.13, 0.13))
        write_image(root / "data" / "raw" / f"{i:04d}.tif", raw, meta)
        write_image(root / "data" / "gt" / f"{i:04d}.tif", gt, meta)
    config = TrainConfig.build(model="rln", patch=(16, 16), batch=2, steps=2, val_interval=2,
                               val_patches=2, device="cpu", seed=0)
    return train(config, root / "data", root / "model")


def test_predict_refuses_a_nan_voxel(model2d, tmp_path):
    image = _blob((48, 48), value=200.0, background=10.0)
    image[5, 7] = np.nan
    write_image(tmp_path / "nan.tif", image, ImageMetadata("YX", (0.13, 0.13)))
    result = cli("predict", model2d, tmp_path / "nan.tif", "-o", tmp_path / "p.tif")
    assert result.exit_code == 2, result.output
    assert "1 non-finite value" in result.output
    assert not (tmp_path / "p.tif").exists()


def test_predict_warns_when_voxel_sizes_disagree(model2d, tmp_path):
    image = _blob((48, 48), value=200.0, background=10.0)
    for voxel, warned in (((0.03, 0.03), True), ((0.13, 0.135), False), (None, True)):
        path = tmp_path / "img.tif"
        write_image(path, image, ImageMetadata("YX", voxel))
        result = cli("predict", model2d, path, "-o", tmp_path / "p.tif")
        assert result.exit_code == 0, result.output
        assert ("warning:" in result.output) == warned, (voxel, result.output)


def test_calibrated_psf_beside_an_uncalibrated_image_warns(files, tmp_path):
    bare = tmp_path / "bare.tif"
    write_image(bare, read_image(files["image"])[0])  # no voxel size
    result = cli("deconvolve", bare, "--psf", files["psf"], "-o", tmp_path / "o.tif", "-n", "2")
    assert result.exit_code == 0, result.output
    assert "warning:" in result.output and "has none" in result.output
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # both calibrated: no warning (the PSF is resampled)
        result = cli("deconvolve", files["image"], "--psf", files["psf"], "-o", tmp_path / "o.tif")
    assert "warning:" not in result.output


# ------------------------------------------------------------------ item 3: off-centre PSF


def test_off_centre_psf_does_not_shift_the_result(tmp_path):
    import json

    from lucyd.deconv import deconvolve

    shape = (16, 32, 32)
    point = (8, 14, 17)
    image = _blob(shape, centre=point, sigma=1.5, background=1.0)
    off = _blob((11, 15, 15), centre=(5 + 2, 7 + 3, 7 + 3), sigma=1.2, background=0.0)
    for kw in ({}, {"back_projector": "wiener-butterworth", "iterations": 2}):
        result = deconvolve(image, off, progress=False, **{"iterations": 10, **kw})
        assert np.unravel_index(np.argmax(result), shape) == point, kw
    shifted = deconvolve(image, off, iterations=10, progress=False, centre_psf=False)
    assert np.unravel_index(np.argmax(shifted), shape) != point  # what happened before
    write_image(tmp_path / "i.tif", image)
    write_image(tmp_path / "p.tif", off)
    result = cli("deconvolve", tmp_path / "i.tif", "--psf", tmp_path / "p.tif", "-o",
                 tmp_path / "o.tif", "-n", "5", "-q")
    assert result.exit_code == 0 and "(2, 3, 3) voxels off" in result.output, result.output
    record = json.loads((tmp_path / "o.tif.deconv.json").read_text())
    assert record["config"]["psf_offset_voxels"] == [2, 3, 3]


# ------------------------------------------------------------------ item 9: negative mean


def test_over_subtracted_image_is_refused_with_the_reason_and_the_offset_works(files, tmp_path):
    from lucyd.deconv import deconvolve

    image = read_image(files["image"])[0]
    psf = read_image(files["psf"])[0]
    low = image - np.float32(image.mean() + 5.0)  # background over-subtracted: mean -5
    with pytest.raises(InputError, match="not above the background.*--offset"):
        deconvolve(low, psf, iterations=3, progress=False)
    write_image(tmp_path / "low.tif", low)
    result = cli("deconvolve", tmp_path / "low.tif", "--psf", files["psf"], "-o", tmp_path / "o.tif")
    assert result.exit_code == 2 and "not above the background" in result.output
    # the remedy the message names: the offset restores the data (and is kept in the output)
    shift = float(-low.min())
    fixed = deconvolve(low, psf, iterations=3, offset=shift, progress=False)
    reference = deconvolve(low + np.float32(shift), psf, iterations=3, progress=False)
    np.testing.assert_allclose(fixed, reference, rtol=1e-4)
    assert fixed.std() > 1.0  # not a constant


# ------------------------------------------------------------------ item 12: consistency


def test_every_psf_model_defaults_to_the_same_immersion_index_as_the_cli(tmp_path):
    from lucyd.psf import make_psf

    for model in ("gaussian", "born-wolf"):
        out = tmp_path / f"{model}.npy"
        result = cli("psf", "--model", model, "--shape", "9,15,15", "--voxel-size", "0.2,0.1,0.1",
                     "--na", "1.3", "--wavelength", "0.5", "-o", out)
        assert result.exit_code == 0, result.output
        library = make_psf(model, (9, 15, 15), (0.2, 0.1, 0.1), na=1.3, wavelength=0.5)
        np.testing.assert_allclose(np.load(out), library, rtol=1e-5, atol=1e-9)


def test_synth_with_a_model_psf_needs_no_immersion_index(tmp_path):
    result = cli("synth", "--psf-model", "born-wolf", "--na", "1.3", "--wavelength", "0.5",
                 "--voxel-size", "0.2,0.1,0.1", "--psf-shape", "5,9,9", "--shape", "8,16,16",
                 "--n", "1", "--workers", "1", "--device", "cpu", "-o", tmp_path / "set")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "set" / "raw" / "0000.tif").exists()


def test_nan_option_says_finite(files, tmp_path):
    for option in ("--tv", "--tol", "--wb-alpha", "--offset"):
        result = cli("deconvolve", files["image"], "--psf", files["psf"], "-o", tmp_path / "o.tif",
                     option, "nan")
        assert result.exit_code == 2 and "must be a finite number" in result.output, option


def test_small_volume_stored_as_rgb_gets_an_explanation(tmp_path):
    import tifffile

    tifffile.imwrite(tmp_path / "tiny.tif", np.ones((2, 3, 3), np.float32), photometric="rgb")
    result = cli("info", tmp_path / "tiny.tif")
    assert result.exit_code == 2
    assert "stored as an RGB image" in result.output and "minisblack" in result.output
    tifffile.imwrite(tmp_path / "grey.tif", np.ones((2, 3, 3), np.float32),
                     photometric="minisblack")
    assert read_image(tmp_path / "grey.tif")[0].shape == (2, 3, 3)


def test_isotropic_prints_a_summary_like_every_command(tmp_path, monkeypatch):
    import json

    import lucyd.isotropic

    # the printing is under test, not the training (tested in test_isotropic.py)
    monkeypatch.setattr(lucyd.isotropic, "isotropic_restore",
                        lambda image, f, **kw: np.repeat(image, round(f), axis=0))
    stack = np.random.default_rng(0).uniform(10, 20, (6, 24, 24)).astype(np.float32)
    write_image(tmp_path / "s.tif", stack, ImageMetadata("ZYX", (0.4, 0.2, 0.2)))
    common = ("isotropic", tmp_path / "s.tif", "--steps", "1", "--patch", "16", "--batch", "1",
              "--network", "care", "--device", "cpu")
    result = cli(*common, "-o", tmp_path / "o.tif")
    assert result.exit_code == 0, result.output
    assert result.output.startswith(f"wrote {tmp_path / 'o.tif'}: shape 12 x 24 x 24")
    result = cli(*common, "-o", tmp_path / "o.tif", "--json")
    assert json.loads(result.output)["shape"] == [12, 24, 24]


# ------------------------------------------------------------------ item 11: unbounded work


def test_absurd_iteration_count_is_refused_before_any_work(files, tmp_path, monkeypatch):
    import lucyd.deconv.api as api
    from lucyd.deconv import deconvolve

    def no_compute(*args, **kwargs):
        raise AssertionError("started computing")

    monkeypatch.setattr(api, "run_rl", no_compute)
    result = cli("deconvolve", files["image"], "--psf", files["psf"], "-o", tmp_path / "o.tif",
                 "--iterations", "1000000000")
    assert result.exit_code == 2 and "1 to 100,000" in result.output, result.output
    with pytest.raises(InputError, match="1 to 100,000"):
        deconvolve(np.ones((8, 8), np.float32), np.ones((3, 3)), iterations=10**9)


def test_deconvolve_shows_its_estimate_first(files, tmp_path):
    result = cli("deconvolve", files["image"], "--psf", files["psf"], "-o", tmp_path / "o.tif",
                 "-n", "3")
    assert result.exit_code == 0, result.output
    first = result.output.splitlines()[0]
    assert first.startswith("estimate: ") and "peak" in first and "for 3 iterations" in first


def test_job_larger_than_memory_is_refused_with_the_estimate(files, tmp_path, monkeypatch):
    import lucyd.validation

    monkeypatch.setattr(lucyd.validation, "available_memory", lambda: 10**5, raising=False)
    result = cli("deconvolve", files["image"], "--psf", files["psf"], "-o", tmp_path / "o.tif",
                 "-n", "1", "-q")
    assert result.exit_code == 2, result.output
    assert "of memory but only 100 kB is available" in result.output
    assert "--max-memory" in result.output


def test_huge_psf_is_refused_before_computing(tmp_path):
    """`lucyd psf --shape 2001,2001,2001` (385 GB of work arrays) must not start."""
    import resource

    def limit():  # so that the old behaviour fails fast instead of exhausting the machine
        resource.setrlimit(resource.RLIMIT_AS, (8 * 2**30, 8 * 2**30))

    import lucyd

    env = dict(os.environ, PYTHONPATH=str(Path(lucyd.__file__).parents[1]))
    args = ["psf", "--shape", "2001,2001,2001", "--voxel-size", "0.1", "--na", "1.3",
            "--wavelength", "0.5", "-o", str(tmp_path / "big.tif")]
    proc = subprocess.run([sys.executable, "-m", "lucyd", *args], capture_output=True, text=True,
                          env=env, preexec_fn=limit, timeout=120)
    assert proc.returncode == 2, proc.stderr[-500:]
    assert "needs about 385 GB of memory" in proc.stderr
    assert not (tmp_path / "big.tif").exists()


# ------------------------------------------------------------------ item 6: --max-memory

_MEMORY_JOB = """
import os, resource, sys
import numpy as np
os.environ["LUCYD_NO_PROGRESS"] = "1"
import scipy.ndimage, torch
from lucyd.deconv import deconvolve_file
from lucyd.io import write_image
shape, k, budget = (24, 192, 192), 15, int(sys.argv[1])
write_image("i.tif", np.random.default_rng(0).poisson(50, shape).astype(np.float32))
g = np.meshgrid(*[np.arange(k) - k // 2] * 3, indexing="ij")
write_image("p.tif", np.exp(-sum(x.astype(np.float32) ** 2 for x in g) / 8).astype(np.float32))
torch.fft.irfftn(torch.fft.rfftn(torch.ones(8, 8, 8)), s=(8, 8, 8))
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
deconvolve_file("i.tif", "p.tif", "o.tif", iterations=2, max_memory=budget, progress=False)
print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - base) / budget)
"""


def test_max_memory_bounds_the_peak_resident_memory(tmp_path):
    """Peak RSS above the runtime's fixed cost stays near the budget (was 2.1x: freed job
    arrays stayed resident from block to block, and written pages of the output counted)."""
    import lucyd

    env = dict(os.environ, PYTHONPATH=str(Path(lucyd.__file__).parents[1]))
    budget = 30_000_000  # whole-image job: ~190 MB, so 12 blocks
    proc = subprocess.run([sys.executable, "-c", _MEMORY_JOB, str(budget)], cwd=tmp_path,
                          capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    ratio = float(proc.stdout.split()[-1])
    assert ratio <= 1.25, f"peak RSS above the fixed cost is {ratio:.2f}x the budget"


def test_writer_pages_do_not_stay_resident(tmp_path):
    from lucyd.io import open_writer

    page = os.sysconf("SC_PAGE_SIZE")

    def resident():
        return int(Path("/proc/self/statm").read_text().split()[1]) * page

    with open_writer(tmp_path / "big.npy", (64, 512, 512)) as out:  # 64 MB
        before = resident()
        for z in range(64):
            out[z] = np.full((512, 512), z, np.float32)
        grown = resident() - before
    assert grown < 16 * 2**20, f"{grown / 2**20:.0f} MiB of written pages stayed resident"
    assert np.load(tmp_path / "big.npy", mmap_mode="r")[63, 5, 5] == 63


# ------------------------------------------------------------------ the bad-input table
#
# One row per case: (id, what is wrong, command line, exit status, text the output must contain).
# In the command line, {name} is a file of the ``bad_files`` fixture (``{out}``: a fresh output
# path). docs/sections/90_robustness.md lists the same cases with the message each gets
# (``python tests/test_robustness.py`` prints that table).

BAD_INPUTS = [
    # deconvolve: files
    ("deconv-missing-input", "input file does not exist",
     "deconvolve {missing} --psf {psf} -o {out}", 2, "no such file"),
    ("deconv-missing-psf", "PSF file does not exist",
     "deconvolve {image} --psf {missing} -o {out}", 2, "no such file"),
    ("deconv-output-is-input", "output path is the input",
     "deconvolve {image} --psf {psf} -o {image}", 2, "is the input"),
    ("deconv-output-is-psf", "output path is the PSF",
     "deconvolve {image} --psf {psf} -o {psf}", 2, "is the input"),
    ("deconv-output-link-to-input", "output is a symbolic link to the input",
     "deconvolve {image} --psf {psf} -o {link}", 2, "is the input"),
    ("deconv-output-under-a-file", "output folder is a file",
     "deconvolve {image} --psf {psf} -o {textfile}/o.tif", 2, "cannot be created"),
    ("deconv-output-extension", "output extension not supported (.png)",
     "deconvolve {image} --psf {psf} -o {dir}/o.png", 2, "unsupported file extension"),
    ("deconv-empty-file", "input is an empty .tif file",
     "deconvolve {empty} --psf {psf} -o {out}", 2, "not a readable TIFF"),
    ("deconv-text-as-tif", "input is a text file named .tif",
     "deconvolve {textfile} --psf {psf} -o {out}", 2, "not a readable TIFF"),
    ("deconv-truncated-tif", "input TIFF cut in half",
     "deconvolve {truncated} --psf {psf} -o {out}", 2, "truncated"),
    ("deconv-4d", "input has channels (4D)",
     "deconvolve {four_d} --psf {psf} -o {out}", 2, "more axes than supported"),
    ("deconv-rgb", "small volume stored as RGB",
     "deconvolve {rgb} --psf {psf} -o {out}", 2, "stored as an RGB image"),
    # deconvolve: data
    ("deconv-nan", "one NaN voxel in the image",
     "deconvolve {nan} --psf {psf} -o {out}", 2, "1 non-finite value"),
    ("deconv-inf", "one Inf voxel in the image",
     "deconvolve {inf} --psf {psf} -o {out}", 2, "1 non-finite value"),
    ("deconv-psf-nan", "NaN in the PSF",
     "deconvolve {image} --psf {psf_nan} -o {out}", 2, "non-finite"),
    ("deconv-psf-zero", "PSF all zeros",
     "deconvolve {image} --psf {psf_zero} -o {out}", 2, "all zeros"),
    ("deconv-psf-negative", "PSF with negative values",
     "deconvolve {image} --psf {psf_negative} -o {out}", 2, "negative values"),
    ("deconv-psf-2d", "2D PSF for a 3D image",
     "deconvolve {image} --psf {psf_2d} -o {out}", 2, "dimensions"),
    ("deconv-negative-mean", "image mean below zero (background over-subtracted)",
     "deconvolve {negative} --psf {psf} -o {out}", 2, "not above the background"),
    ("deconv-off-centre-psf", "PSF peak 2-3 voxels off centre",
     "deconvolve {image} --psf {psf_off} -o {out} -n 2", 0, "warning: psf: its main lobe"),
    ("deconv-uncalibrated-image", "calibrated PSF, image without voxel size",
     "deconvolve {bare} --psf {psf} -o {out} -n 2", 0, "has none"),
    # deconvolve: options
    ("deconv-iterations-0", "--iterations 0",
     "deconvolve {image} --psf {psf} -o {out} -n 0", 2, "--iterations"),
    ("deconv-iterations-huge", "--iterations 1000000000",
     "deconvolve {image} --psf {psf} -o {out} -n 1000000000", 2, "1 to 100,000"),
    ("deconv-tv-nan", "--tv nan",
     "deconvolve {image} --psf {psf} -o {out} --tv nan", 2, "must be a finite number"),
    ("deconv-tv-large", "--tv 1.5",
     "deconvolve {image} --psf {psf} -o {out} --tv 1.5", 2, "tv"),
    ("deconv-tol-negative", "--tol -1",
     "deconvolve {image} --psf {psf} -o {out} --tol -1", 2, "tol"),
    ("deconv-back-projector", "unknown --back-projector",
     "deconvolve {image} --psf {psf} -o {out} --back-projector foo", 2, "--back-projector"),
    ("deconv-boundary", "unknown --boundary",
     "deconvolve {image} --psf {psf} -o {out} --boundary foo", 2, "--boundary"),
    ("deconv-acceleration", "unknown --acceleration",
     "deconvolve {image} --psf {psf} -o {out} --acceleration foo", 2, "--acceleration"),
    ("deconv-max-memory-text", "--max-memory abc",
     "deconvolve {image} --psf {psf} -o {out} --max-memory abc", 2, "cannot parse"),
    ("deconv-max-memory-tiny", "--max-memory 1kB",
     "deconvolve {image} --psf {psf} -o {out} --max-memory 1kB", 2, "too small"),
    ("deconv-voxel-zero", "--voxel-size 0,1,1",
     "deconvolve {image} --psf {psf} -o {out} --voxel-size 0,1,1", 2, "positive"),
    ("deconv-voxel-text", "--voxel-size a,b",
     "deconvolve {image} --psf {psf} -o {out} --voxel-size a,b", 2, "numbers"),
    ("deconv-start", "--start foo",
     "deconvolve {image} --psf {psf} -o {out} --start foo", 2, "--start"),
    # info
    ("info-missing", "file does not exist", "info {missing}", 2, "no such file"),
    ("info-folder", "a folder that is not a zarr store", "info {dir}", 2, "zarr"),
    ("info-extension", "unknown extension (.png)", "info {png}", 2, "unsupported file extension"),
    ("info-truncated-npy", ".npy cut short", "info {truncated_npy}", 2, "not a readable .npy"),
    # psf
    ("psf-huge", "--shape 2001,2001,2001",
     "psf --shape 2001,2001,2001 --voxel-size 0.1 --na 1.3 --wavelength 0.5 -o {out}", 2,
     "of memory"),
    ("psf-even", "--shape 4,4,4 (even)",
     "psf --shape 4,4,4 --voxel-size 0.1 --na 1.3 --wavelength 0.5 -o {out}", 2, "odd"),
    ("psf-na", "--na 2 (above the immersion index)",
     "psf --shape 5,9,9 --voxel-size 0.1 --na 2 --wavelength 0.5 -o {out}", 2, "na"),
    ("psf-nanometres", "--wavelength 520 (nm, not µm)",
     "psf --shape 5,9,9 --voxel-size 0.1 --na 1.3 --wavelength 520 -o {out}", 2, "micrometres"),
    ("psf-no-voxel", "model PSF without --voxel-size",
     "psf --shape 5,9,9 --na 1.3 --wavelength 0.5 -o {out}", 2, "--voxel-size"),
    ("psf-beads-over-input", "--from-beads output over the bead image",
     "psf --from-beads {image} -o {image}", 2, "is the input"),
    # predict
    ("predict-missing-model", "model folder does not exist",
     "predict {missing} {image2d} -o {out}", 2, "missing"),
    ("predict-output-is-input", "output path is the input",
     "predict {model} {image2d} -o {image2d}", 2, "is the input"),
    ("predict-nan", "one NaN voxel", "predict {model} {nan2d} -o {out}", 2, "1 non-finite value"),
    ("predict-voxel-mismatch", "image voxel size 4x smaller than the model's",
     "predict {model} {fine2d} -o {out}", 0, "warning:"),
    ("predict-wrong-ndim", "3D image for a 2D model", "predict {model} {image} -o {out}", 2,
     "restores 2D images"),
    # other commands
    ("synth-tiny-shape", "synth --shape 2,2,2", "synth --shape 2,2,2 -o {outdir}", 2, "shape"),
    ("synth-negative-photons", "synth --photons -1", "synth --photons -1 -o {outdir}", 2,
     "photons"),
    ("evaluate-shapes", "prediction and ground truth differ in shape",
     "evaluate {image} {image2d}", 2, "shape"),
    ("isotropic-2d", "2D input for isotropic restoration", "isotropic {image2d} -o {out}", 2,
     "needs a 3D"),
    ("isotropic-no-voxel", "no voxel size and no --z-factor", "isotropic {bare} -o {out}", 2,
     "--z-factor"),
    ("train-missing-data", "--data folder does not exist", "train --data {missing} -o {outdir}",
     2, "missing"),
    ("version", "lucyd --version", "--version", 0, "."),
    ("unknown-command", "lucyd frobnicate", "frobnicate", 2, "No such command"),
]


def _bad_files(root: Path) -> dict[str, Path]:
    """The files the cases refer to (small; written once per module)."""
    import tifffile

    vox = ImageMetadata("ZYX", (0.3, 0.13, 0.13))
    image = _blob()
    psf = _blob((7, 9, 9), sigma=1.2, background=0.0)
    files = {"dir": root, "missing": root / "missing.tif"}

    def put(name, data, meta=vox):
        files[name] = write_image(root / name.replace("_", "-"), data, meta)

    put("image.tif", image)
    put("psf.tif", psf)
    put("bare.tif", image, None)
    nan, inf = image.copy(), image.copy()
    nan[3, 4, 5], inf[3, 4, 5] = np.nan, np.inf
    put("nan.tif", nan)
    put("inf.tif", inf)
    put("negative.tif", image - np.float32(image.mean() + 5))
    psf_nan = psf.copy()
    psf_nan[0, 0, 0] = np.nan
    put("psf_nan.npy", psf_nan)
    put("psf_zero.tif", np.zeros_like(psf))
    put("psf_negative.tif", psf - np.float32(0.5 * psf.max()))
    put("psf_2d.tif", psf[3], ImageMetadata("YX", (0.13, 0.13)))
    put("psf_off.tif", _blob((11, 15, 15), centre=(7, 10, 10), sigma=1.2, background=0.0))
    image2d = _blob((48, 48), value=200.0, background=10.0)
    put("image2d.tif", image2d, ImageMetadata("YX", (0.13, 0.13)))
    put("fine2d.tif", image2d, ImageMetadata("YX", (0.03, 0.03)))
    nan2d = image2d.copy()
    nan2d[5, 7] = np.nan
    put("nan2d.tif", nan2d, ImageMetadata("YX", (0.13, 0.13)))
    (root / "empty.tif").write_bytes(b"")
    (root / "text.tif").write_text("not an image\n")
    (root / "image.png").write_bytes(b"\x89PNG\r\n")
    whole = files["image.tif"].read_bytes()
    (root / "truncated.tif").write_bytes(whole[: len(whole) // 2])
    npy = write_image(root / "whole.npy", image).read_bytes()
    (root / "truncated.npy").write_bytes(npy[: len(npy) // 2])
    tifffile.imwrite(root / "four-d.tif", np.ones((2, 3, 8, 8), np.float32), imagej=True,
                     metadata={"axes": "ZCYX"})
    tifffile.imwrite(root / "rgb.tif", np.ones((2, 3, 3), np.float32), photometric="rgb")
    (root / "link.tif").symlink_to(files["image.tif"])
    for name in ("empty", "text", "truncated", "rgb", "link"):
        files[name if name != "text" else "textfile"] = root / f"{name}.tif"
    files["png"] = root / "image.png"
    files["truncated_npy"] = root / "truncated.npy"
    files["four_d"] = root / "four-d.tif"
    return {key.removesuffix(".tif").removesuffix(".npy"): value for key, value in files.items()}


@pytest.fixture(scope="module")
def bad_files(tmp_path_factory, model2d):
    files = _bad_files(tmp_path_factory.mktemp("bad"))
    files["model"] = model2d
    return files


def _argv(template: str, files: dict, out_dir: Path) -> list[str]:
    values = {k: str(v) for k, v in files.items()}
    values["out"] = str(out_dir / "out.tif")
    values["outdir"] = str(out_dir / "out-folder")
    return template.format(**values).split()


@pytest.mark.parametrize("case", BAD_INPUTS, ids=[c[0] for c in BAD_INPUTS])
def test_bad_input_gets_a_clear_answer(case, bad_files, tmp_path):
    _, _, template, status, expected = case
    result = cli(*_argv(template, bad_files, tmp_path))
    assert result.exit_code == status, result.output
    assert expected in result.output, result.output
    assert "Traceback" not in result.output and not (
        result.exception and not isinstance(result.exception, SystemExit))
    lines = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(lines) == (1 if status == 2 and expected != "No such command" else 0)
    if status != 0:  # nothing written
        assert not (tmp_path / "out.tif").exists()


def test_readme_table_lists_every_case():
    table = (REPO / "docs" / "sections" / "90_robustness.md").read_text()
    missing = [case[0] for case in BAD_INPUTS if f"`{case[0]}`" not in table]
    assert not missing, f"docs/sections/90_robustness.md lacks {missing}"


def markdown_table(root: Path) -> str:
    """The README table: each case with the first line it prints (run from a scratch folder)."""
    from lucyd.train import TrainConfig, train

    files = _bad_files(root / "files")
    rng = np.random.default_rng(0)
    for i in range(3):
        gt = _blob((48, 48), centre=rng.uniform(10, 38, 2), value=200.0, background=10.0)
        meta = ImageMetadata("YX", (0.13, 0.13))
        write_image(root / "data" / "raw" / f"{i}.tif", rng.poisson(gt).astype(np.float32), meta)
        write_image(root / "data" / "gt" / f"{i}.tif", gt, meta)
    files["model"] = train(TrainConfig.build(model="rln", patch=(16, 16), batch=2, steps=2,
                                             val_interval=2, val_patches=2, device="cpu"),
                           root / "data", root / "model")
    rows = ["| case | what is wrong | exit | what lucyd says |", "|---|---|---|---|"]
    for i, (name, what, template, status, _) in enumerate(BAD_INPUTS):
        out = root / f"run{i}"
        out.mkdir()
        result = cli(*_argv(template, files, out))
        lines = [ln for ln in result.output.splitlines()
                 if ln.startswith(("error:", "warning:")) or status == 0 and ln and i == len(BAD_INPUTS) - 2]
        if not lines:
            lines = [ln.strip(" │╭╰─") for ln in result.output.splitlines() if "No such" in ln]
        said = lines[0] if lines else result.output.strip().splitlines()[-1]
        said = said.replace(str(root), "…").replace("|", "\\|")
        rows.append(f"| `{name}` | {what} | {result.exit_code} | {said} |")
    return "\n".join(rows)


if __name__ == "__main__":
    import tempfile

    os.environ.setdefault("LUCYD_NO_PROGRESS", "1")
    with tempfile.TemporaryDirectory() as scratch:
        print(markdown_table(Path(scratch)))


def test_folder_outputs_may_exist(tmp_path):
    """Model folders and data sets are folders: an existing one is fine (resume, overwrite)."""
    from lucyd.io.outputs import check_output_path

    (tmp_path / "model").mkdir()
    check_output_path(tmp_path / "model", [tmp_path / "data"], folder=True)
    with pytest.raises(FileFormatError, match="is a folder"):
        check_output_path(tmp_path / "model", [])
    (tmp_path / "file").write_text("")
    with pytest.raises(FileFormatError, match="is a file"):
        check_output_path(tmp_path / "file", [], folder=True)
