"""A display on which napari can draw, for headless Qt tests.

napari draws its canvas with OpenGL. Qt's ``offscreen`` platform starts without a display but
gives napari no OpenGL (layers fail to load) or, on an X display, an OpenGL context that
draws (almost) black (Mesa 22; PyQt5 5.15 and PyQt6 6.11 alike). What works headless is Qt's
``xcb`` platform on a virtual X server: :func:`ensure_gl` starts a private ``Xvfb`` (Debian:
``apt-get install xvfb`` and the xcb libraries Qt's xcb plugin needs, see ``.ci/run``) that
dies with this process, and checks in a subprocess (so that a Qt abort cannot kill pytest)
that a napari viewer there draws an image. Without Xvfb it checks the environment as it is. It returns
the reason when napari cannot draw, for ``pytest.skip``.
"""

from __future__ import annotations

import ctypes
import os
import shutil
import signal
import subprocess
import sys

_PROBE = """
import numpy as np, napari
viewer = napari.Viewer(show=True)
viewer.add_image(np.tile(np.linspace(0, 1, 64), (64, 1)))
shot = viewer.screenshot(canvas_only=True, size=(64, 64))
viewer.close()
print("screenshot std", shot[..., :3].std())
raise SystemExit(0 if shot[..., :3].std() > 5 else 3)  # a blank canvas: 0
"""

_state: dict[str, str | None] = {}


def qt_unavailable() -> str | None:
    """Why Qt's GUI modules cannot be imported here (missing binding or system libraries such as
    libEGL or fontconfig), or None when they can."""
    try:
        import qtpy.QtWidgets  # noqa: F401
    except Exception as exc:  # noqa: BLE001 - ImportError, or OSError from a missing shared library
        return f"Qt cannot start here: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
    return None


def _gl_works() -> tuple[bool, str]:
    """Can a napari viewer draw an image in this environment (checked in a subprocess)?"""
    try:
        run = subprocess.run([sys.executable, "-c", _PROBE], capture_output=True, text=True, timeout=120)
    except subprocess.TimeoutExpired:
        return False, "the OpenGL probe timed out"
    if run.returncode == 0:
        return True, ""
    said = [line for line in (run.stdout + run.stderr).splitlines()
            if line.startswith("screenshot") or "Error" in line or "error" in line]
    return False, (said[-1] if said else f"exit code {run.returncode}")[:200]


def _die_with_parent() -> None:  # runs in the child before exec (Linux)
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG: Xvfb ends when pytest ends


def _start_xvfb() -> str | None:
    """Start Xvfb on a free display; its name (":N"), or None."""
    exe = shutil.which("Xvfb")
    if exe is None or not sys.platform.startswith("linux"):
        return None
    read_fd, write_fd = os.pipe()
    subprocess.Popen([exe, "-displayfd", str(write_fd), "-screen", "0", "1280x1024x24", "-nolisten", "tcp"],
                     pass_fds=(write_fd,), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                     preexec_fn=_die_with_parent)
    os.close(write_fd)
    with os.fdopen(read_fd) as pipe:  # Xvfb writes the display number when it accepts clients
        number = pipe.readline().strip()
    return f":{number}" if number.isdigit() else None


def ensure_gl() -> str | None:
    """Make this process able to draw with OpenGL under Qt; None when it can, else the reason."""
    if "reason" in _state:
        return _state["reason"]
    display = _start_xvfb()
    if display is not None:
        os.environ["DISPLAY"] = display
        os.environ["QT_QPA_PLATFORM"] = "xcb"
        ok, why = _gl_works()
        why = f"napari cannot draw on Xvfb {display} with Qt's xcb platform: {why}"
    else:
        os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
        ok, why = _gl_works()
        why = f"napari cannot draw here ({why}); install Xvfb (apt-get install xvfb)"
    _state["reason"] = None if ok else why
    return _state["reason"]
