"""Tests of lucyd.report: display rules, figures, tables, the HTML report and its rendering
in a headless browser."""

from __future__ import annotations

import base64
import math
import re
import struct
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest

from _browser import open_in_chromium
from lucyd import __version__
from lucyd.errors import InputError
from lucyd.report import (
    ReportSection,
    brightest_index,
    clipped_fractions,
    compute_display_range,
    describe_panel_figure,
    figure_to_data_uri,
    format_length,
    format_table,
    format_value,
    new_figure,
    nice_scale_bar_length,
    panel_figure,
    print_metrics_table,
    save_bar_or_table_figure,
    save_line_plot,
    save_panel_figure,
    shared_display_range,
    view_extents,
    write_html_report,
)
from lucyd.report.html import png_css_width

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def png_size(path_or_bytes) -> tuple[int, int]:
    """(width, height) from a PNG header, independently of the code under test."""
    data = path_or_bytes if isinstance(path_or_bytes, bytes) else Path(path_or_bytes).read_bytes()
    assert data.startswith(PNG_MAGIC)
    return struct.unpack(">II", data[16:24])


def spots(shape, n, rng, value=100.0):
    img = np.zeros(shape, np.float32)
    idx = tuple(rng.integers(0, s, n) for s in shape)
    img[idx] = value
    return img


# ------------------------------------------------------------------ display rules


@pytest.mark.parametrize(
    ("width", "expected"),
    [(25.6, 5.0), (64, 10.0), (10, 2.0), (5, 1.0), (0.5, 0.1), (1000, 200.0), (25, 5.0), (3, 0.5)],
)
def test_nice_scale_bar_length_known_values(width, expected):
    assert nice_scale_bar_length(width) == pytest.approx(expected, rel=1e-12)


def test_nice_scale_bar_length_is_round_and_about_a_fifth():
    for width in np.geomspace(0.013, 9.7e4, 157):
        length = nice_scale_bar_length(float(width))
        mantissa = length / 10 ** math.floor(math.log10(length) + 1e-9)
        assert min(abs(mantissa - m) for m in (1, 2, 5)) < 1e-9, (width, length)
        assert width / 12.5 < length <= width / 5 * (1 + 1e-9), (width, length)
    with pytest.raises(InputError):
        nice_scale_bar_length(0)
    with pytest.raises(InputError):
        nice_scale_bar_length(float("nan"))


def test_format_length_units():
    assert format_length(5.0) == "5\u00a0µm"
    assert format_length(0.5) == "500\u00a0nm"
    assert format_length(20, "px") == "20\u00a0px"


def test_compute_display_range_is_percentiles_of_all_voxels(rng):
    img = rng.gamma(2.0, 10.0, size=(6, 20, 20))
    lo, hi = compute_display_range(img, (1, 99))
    assert (lo, hi) == pytest.approx(tuple(np.percentile(img, [1, 99])))
    # a constant image still gives a usable, non-empty range around the value
    lo, hi = compute_display_range(np.full((4, 4), 7.0))
    assert lo < 7.0 < hi
    lo, hi = compute_display_range(np.zeros((4, 4)))
    assert lo < 0.0 < hi
    for bad in [(50, 50), (-1, 99), (1, 101), (99, 1)]:
        with pytest.raises(InputError):
            compute_display_range(img, bad)


def test_shared_display_range_comes_from_reference_panel(rng):
    gt = rng.uniform(0, 100, (16, 16))
    raw = 10 * gt + 500  # a very different intensity scale
    panels = {"raw": raw, "ground truth": gt}
    lo, hi, ref = shared_display_range(panels)
    assert ref == "ground truth"  # default: the last panel
    assert (lo, hi) == pytest.approx(tuple(np.percentile(gt, [0.1, 99.9])))
    lo2, hi2, ref2 = shared_display_range(panels, reference="raw")
    assert ref2 == "raw" and lo2 == pytest.approx(np.percentile(raw, 0.1))
    assert shared_display_range(panels, reference=0)[2] == "raw"
    assert shared_display_range(panels, display_range=(1, 2)) == (1.0, 2.0, None)
    with pytest.raises(InputError):
        shared_display_range(panels, reference="nope")
    with pytest.raises(InputError):
        shared_display_range(panels, display_range=(3, 2))


def test_clipped_fractions_and_brightest_index():
    img = np.arange(10.0)
    assert clipped_fractions(img, 1.5, 7.5) == pytest.approx((0.2, 0.2))
    stack = np.zeros((7, 5, 5))
    stack[2, 3, :] = 1.0
    assert brightest_index(stack, axis=0) == 2
    assert brightest_index(stack, axis=1) == 3
    assert brightest_index(np.ones((7, 4, 4)), axis=0) == 3  # tie -> middle slice


def test_view_extents_follow_voxel_size():
    ext = view_extents((10, 20, 40), (0.5, 0.1, 0.1))
    assert ext["xy"] == pytest.approx((0, 4.0, 2.0, 0))
    assert ext["xz"] == pytest.approx((0, 4.0, 5.0, 0))
    assert view_extents((20, 40), None) == {"xy": (0.0, 40.0, 20.0, 0.0)}


# ------------------------------------------------------------------ panel figure


def _axes(fig, name, view):
    return next(ax for ax in fig.axes if ax.get_label() == f"{name}:{view}")


def test_panel_figure_shares_display_range_and_slices(rng):
    gt = rng.uniform(0, 50, (9, 24, 32)).astype(np.float32)
    gt[6, 10, 5:20] = 400  # brightest z slice 6, brightest row y 10
    panels = {"raw": gt * 3 + 20, "RL": gt * 0.5, "ground truth": gt}
    fig = panel_figure(panels, voxel_size=(0.4, 0.1, 0.1), dpi=50)
    lo, hi = np.percentile(gt, [0.1, 99.9])
    for name, arr in panels.items():
        xy, xz = _axes(fig, name, "xy"), _axes(fig, name, "xz")
        for ax in (xy, xz):
            im = ax.images[0]
            assert (im.norm.vmin, im.norm.vmax) == pytest.approx((lo, hi))
        np.testing.assert_array_equal(xy.images[0].get_array(), arr[6])
        np.testing.assert_array_equal(xz.images[0].get_array(), arr[:, 10, :])
        # xz drawn to scale: 9 * 0.4 µm tall, 32 * 0.1 µm wide
        bbox = xz.get_window_extent()
        assert bbox.height / bbox.width == pytest.approx(3.6 / 3.2, rel=0.02)
        bbox = xy.get_window_extent()
        assert bbox.height / bbox.width == pytest.approx(2.4 / 3.2, rel=0.02)
    text = describe_panel_figure(panels, voxel_size=(0.4, 0.1, 0.1))
    assert "'ground truth'" in text and "z = 6" in text and "y = 10" in text
    assert "500\u00a0nm" in text  # 3.2 µm wide -> 0.5 µm bar
    # explicit slices and range are honoured
    fig = panel_figure(panels, z_index=1, y_index=-1, display_range=(0, 10), dpi=50)
    im = _axes(fig, "RL", "xy").images[0]
    np.testing.assert_array_equal(im.get_array(), panels["RL"][1])
    assert (im.norm.vmin, im.norm.vmax) == (0, 10)
    np.testing.assert_array_equal(_axes(fig, "RL", "xz").images[0].get_array(), gt[:, 23] * 0.5)


def test_panel_figure_pixels_use_one_contrast(rng):
    """In the rendered pixels, a panel at half the intensity looks half as bright."""
    ramp = np.tile(np.linspace(0, 100, 64, dtype=np.float32), (48, 1))
    fig = panel_figure({"half": ramp / 2, "full": ramp}, cmap="gray", dpi=60, show_caption=False)
    fig.canvas.draw()
    rgba = np.asarray(fig.canvas.buffer_rgba())
    height = rgba.shape[0]

    def brightest(name):
        bb = _axes(fig, name, "xy").get_window_extent()
        top, bottom = int(height - bb.y1), int(height - bb.y0)
        # the upper half of the panel, away from the scale bar (bottom right)
        rows = slice(top + 3, (top + bottom) // 2)
        cols = slice(int(bb.x0) + 3, int(bb.x1) - 3)
        return rgba[rows, cols, 0].astype(float).max()

    assert brightest("full") > 245
    assert brightest("half") == pytest.approx(0.5 * 255, abs=12)


def test_save_panel_figure_png_sizes(tmp_path, rng):
    gt = spots((8, 32, 48), 20, rng)
    panels = {"raw": gt + 1, "RL": gt, "ground truth": gt}
    p3 = save_panel_figure(panels, tmp_path / "f3.png", voxel_size=(0.3, 0.1, 0.1), dpi=40)
    p2 = save_panel_figure({k: v[4] for k, v in panels.items()}, tmp_path / "f2.png", dpi=40)
    p3hi = save_panel_figure(panels, tmp_path / "f3hi.png", voxel_size=(0.3, 0.1, 0.1), dpi=80)
    (w3, h3), (w2, h2), (w3hi, h3hi) = png_size(p3), png_size(p2), png_size(p3hi)
    assert w3 > 3 * h2 and w3 > h3  # panels in a row: a wide picture
    assert w3 == w2 and h3 > h2  # 3D has a second (xz) row
    assert abs(w3hi - 2 * w3) <= 2 and abs(h3hi - 2 * h3) <= 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f2.png", "f3.png", "f3hi.png"]
    fig = panel_figure({k: v[4] for k, v in panels.items()}, dpi=40)
    assert len([ax for ax in fig.axes if ax.images]) == 3  # 2D: one row


def test_panel_figure_rejects_bad_input(tmp_path):
    a = np.zeros((8, 8), np.float32)
    with pytest.raises(InputError, match="shape"):
        save_panel_figure({"a": a, "b": np.zeros((8, 9))}, tmp_path / "x.png")
    with pytest.raises(InputError, match="non-finite"):
        save_panel_figure({"a": np.full((4, 4), np.nan)}, tmp_path / "x.png")
    with pytest.raises(InputError, match="views"):
        save_panel_figure({"a": np.zeros((3, 8, 8))}, tmp_path / "x.png", views=("yz",))
    with pytest.raises(InputError, match="z_index"):
        save_panel_figure({"a": np.zeros((3, 8, 8))}, tmp_path / "x.png", z_index=3)
    with pytest.raises(InputError):
        save_panel_figure({}, tmp_path / "x.png")
    assert list(tmp_path.iterdir()) == []  # nothing half-written left behind


# ------------------------------------------------------------------ other figures


def test_save_line_plot(tmp_path):
    it = np.arange(1, 21)
    path = save_line_plot(
        {"RL": (it, 20 + np.log(it)), "WB": (it, 21 + np.log(it))},
        tmp_path / "psnr.png",
        xlabel="iteration",
        ylabel="PSNR (dB)",
        logx=True,
        dpi=50,
    )
    w, h = png_size(path)
    assert (w, h) == (320, 210)  # 6.4 x 4.2 inches at 50 dpi
    with pytest.raises(InputError, match="equal length"):
        save_line_plot({"a": ([1, 2], [1])}, tmp_path / "x.png", xlabel="x", ylabel="y")
    with pytest.raises(InputError, match="positive"):
        save_line_plot(
            {"a": ([0, 1], [1, 2])}, tmp_path / "x.png", xlabel="x", ylabel="y", logx=True
        )


def test_save_bar_or_table_figure(tmp_path):
    rows = [
        {"method": "RL", "psnr": 28.1, "ssim": 0.8},
        {"method": "RLN", "psnr": 30.5, "ssim": 0.9},
    ]
    for kind in ("bar", "table"):
        path = save_bar_or_table_figure(rows, tmp_path / f"{kind}.png", kind=kind, dpi=40)
        assert path.read_bytes().startswith(PNG_MAGIC)
    with pytest.raises(InputError):
        save_bar_or_table_figure(rows, tmp_path / "x.png", values=["method"])


def test_figure_to_data_uri_round_trip(tmp_path):
    fig = new_figure(1, 1, dpi=20)
    fig.add_subplot(1, 1, 1).plot([0, 1])
    uri = figure_to_data_uri(fig)
    assert uri.startswith("data:image/png;base64,")
    data = base64.b64decode(uri.split(",", 1)[1])
    assert png_size(data) == (20, 20)
    path = tmp_path / "f.png"
    path.write_bytes(data)
    assert figure_to_data_uri(path) == uri == figure_to_data_uri(data)
    with pytest.raises(InputError):
        figure_to_data_uri(b"not an image")


# ------------------------------------------------------------------ tables


def test_format_value_precision():
    assert format_value(31.23456, "psnr") == "31.23"
    assert format_value(np.float32(0.912345), "SSIM") == "0.9123"
    assert format_value(0.1, "nrmse") == "0.1000"
    assert format_value(12.3456, "time_s") == "12.3"
    assert format_value(7) == "7" and format_value(np.int64(7)) == "7"
    assert format_value(float("nan"), "psnr") == "n/a"
    assert format_value(None) == "" and format_value(True) == "yes"
    assert format_value(1.23456789) == "1.235"


def test_format_table_and_rich_table():
    rows = [{"method": "raw", "psnr": 21.234, "ssim": 0.51234}, {"method": "RLN", "psnr": 30.0}]
    text = format_table(rows)
    lines = text.splitlines()
    assert lines[0].split() == ["method", "psnr", "ssim"]
    assert lines[2].split() == ["raw", "21.23", "0.5123"]
    assert lines[3].split() == ["RLN", "30.00"]
    assert len({len(line) for line in lines[:3]}) == 1  # aligned columns
    same = format_table(
        (["method", "psnr", "ssim"], [["raw", 21.234, 0.51234], ["RLN", 30.0, None]])
    )
    assert same == text
    with pytest.raises(InputError):
        format_table((["a", "b"], [[1]]))
    from rich.console import Console

    console = Console(record=True, width=80)
    print_metrics_table(rows, title="metrics", console=console)
    out = console.export_text()
    assert "21.23" in out and "0.5123" in out and "metrics" in out


# ------------------------------------------------------------------ HTML report


class _Collector(HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags: list[tuple[str, dict]] = []
        self.cells: list[str] = []
        self.body_attrs: dict = {}
        self._in_cell = False

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        self.tags.append((tag, attrs))
        if tag == "body":
            self.body_attrs = attrs
        if tag in ("td", "th"):
            self._in_cell = True
            self.cells.append("")

    def handle_endtag(self, tag):
        if tag in ("td", "th"):
            self._in_cell = False

    def handle_data(self, data):
        if self._in_cell:
            self.cells[-1] += data


def _make_report(tmp_path, rng) -> Path:
    gt = spots((6, 24, 24), 12, rng)
    fig_path = save_panel_figure(
        {"raw": gt + 2, "RL": gt, "ground truth": gt},
        tmp_path / "figure.png",
        voxel_size=(0.3, 0.1, 0.1),
        title="demo",
        dpi=40,
    )
    it = np.arange(1, 11)
    curve = save_line_plot(
        {"RL": (it, np.log(it))}, tmp_path / "curve.png", xlabel="i", ylabel="p", dpi=40
    )
    rows = [
        {"method": "raw", "psnr": 21.23456, "ssim": 0.512345, "time_s": 0.0},
        {"method": "RL <fast>", "psnr": 28.98765, "ssim": 0.9123456, "time_s": 1.5},
    ]
    return write_html_report(
        tmp_path / "report.html",
        title="lucyd demo & <friends>",
        metadata={"command": "lucyd demo --quick", "seed": 0},
        sections=[
            ReportSection(
                "Restorations",
                text="Raw & restored <script>alert(1)</script>.\n\nSecond paragraph.",
                images=[(fig_path, "xy & xz views")],
            ),
            {"heading": "Metrics", "table": rows, "images": [curve.read_bytes()]},
            {
                "heading": "Curves",
                "images": [(curve, "PSNR")],
                "params": {"iterations": 10, "psf": {"na": 1.4}},
            },
        ],
    )


def test_html_report_is_self_contained_and_escaped(tmp_path, rng):
    path = _make_report(tmp_path, rng)
    text = path.read_text(encoding="utf-8")
    parser = _Collector()
    parser.feed(text)
    images = [a for t, a in parser.tags if t == "img"]
    assert len(images) == 3
    for attrs in images:
        assert attrs["src"].startswith("data:image/png;base64,")
        png_size(base64.b64decode(attrs["src"].split(",", 1)[1]))  # decodes to a real PNG
    for tag, attrs in parser.tags:  # nothing fetched from elsewhere
        assert tag != "link"
        for key in ("src", "href"):
            if key in attrs:
                assert attrs[key].startswith(("data:", "#")), (tag, attrs)
    assert any(
        t == "meta" and a.get("http-equiv") == "Content-Security-Policy" for t, a in parser.tags
    )
    # text is escaped: the injected script is shown, not run
    assert "<script>alert(1)" not in text and "&lt;script&gt;alert(1)&lt;/script&gt;" in text
    assert "lucyd demo &amp; &lt;friends&gt;" in text
    # numbers formatted per column
    for value in ["21.23", "0.5123", "28.99", "0.9123", "RL <fast>", "1.5"]:
        assert value in parser.cells
    assert "iterations" in text and "Parameters as JSON" in text
    footer = re.search(r"<footer>(.*?)</footer>", text, re.S).group(1)
    assert __version__ in footer and "UTC" in footer
    assert sorted(p.name for p in tmp_path.iterdir()) == ["curve.png", "figure.png", "report.html"]
    with pytest.raises(InputError, match="unknown keys"):
        write_html_report(
            tmp_path / "x.html", title="t", sections=[{"heading": "h", "txt": "typo"}]
        )


def test_png_css_width_uses_dpi(tmp_path):
    fig = new_figure(2, 1, dpi=192)
    data = base64.b64decode(figure_to_data_uri(fig).split(",", 1)[1])
    assert png_size(data)[0] == 384
    assert png_css_width(data) == pytest.approx(192, abs=1)  # 2 inches at 96 CSS px per inch
    assert png_css_width(b"GIF89a") is None


# ------------------------------------------------------------------ headless browser

def test_report_renders_in_headless_chromium(tmp_path, rng):
    path = _make_report(tmp_path, rng)
    shot = tmp_path / "report_screenshot.png"
    loaded, failed = open_in_chromium(path, tmp_path / "profile1", screenshot=shot)
    assert loaded == "3/3", failed
    assert png_size(shot) == (1200, 2000)

    # control: the check does catch an image that cannot load (an external URL is
    # blocked by the report's Content-Security-Policy and there is no network)
    broken = tmp_path / "broken.html"
    broken.write_text(
        path.read_text(encoding="utf-8").replace(
            "</footer>", '</footer><img src="https://example.invalid/x.png" alt="external">'
        ),
        encoding="utf-8",
    )
    loaded, failed = open_in_chromium(broken, tmp_path / "profile2")
    assert loaded == "3/4" and failed == "external"

    # a rendered page, not a blank one: many distinct colours (figures, text)
    from matplotlib.image import imread

    rgb = np.round(imread(shot)[..., :3] * 255).astype(np.int64)
    colours = np.unique(rgb[..., 0] * 65536 + rgb[..., 1] * 256 + rgb[..., 2])
    assert colours.size > 200
