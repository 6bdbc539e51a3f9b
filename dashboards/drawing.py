"""matplotlib drawing of the widgets render.py plans: a PNG per dashboard on the 24-column grid, and an HTML page.

Figures are built with `matplotlib.figure.Figure` directly (no pyplot): no global state, no GUI backend.
"""

from __future__ import annotations

import base64
import html
import io
import re
import textwrap
from collections.abc import Mapping, Sequence
from datetime import UTC
from pathlib import Path
from typing import TYPE_CHECKING

from matplotlib import dates as mdates
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter
from PIL import Image

if TYPE_CHECKING:
    from matplotlib.axes import Axes

    from dashboards.widgets import AlarmLine, Widget, Window

COLUMNS = 24
COLUMN_INCHES = 0.75
ROW_INCHES = 0.42
HEADER_INCHES = 0.45
DPI = 80
PAD_INCHES = 0.06
# Room under a metric graph for the time ticks, and per line of notes.
TICKS_INCHES = 0.22
NOTE_LINE_INCHES = 0.12
TITLE_INCHES = 0.24
# Close to CloudWatch's default palette.
PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22")
THRESHOLD_COLOR = "#d62728"
# A threshold this many times above the data (or any non-zero one over all-zero data) would flatten the graph
# to the x axis: named in the legend, not drawn.
OFF_SCALE_FACTOR = 4.0


def draw_dashboard(name: str, widgets: Sequence[Widget], window: Window, path: Path) -> dict[int, bytes]:
    """The dashboard as one PNG at `path`; returns each metric widget's own PNG, cut from the same pixels."""
    rows = max((w.y + w.height for w in widgets), default=1)
    size = (COLUMNS * COLUMN_INCHES, HEADER_INCHES + rows * ROW_INCHES)
    figure = Figure(figsize=size, dpi=DPI, facecolor="white")
    figure.text(
        PAD_INCHES / size[0],
        1 - 0.3 / size[1],
        f"{name}    {window.start:%Y-%m-%d %H:%M} – {window.end:%H:%M} UTC",
        fontsize=12,
        fontweight="bold",
    )
    for widget in widgets:
        box = (widget.x * COLUMN_INCHES, HEADER_INCHES + widget.y * ROW_INCHES)
        draw_widget(figure, widget, window, box, (widget.width * COLUMN_INCHES, widget.height * ROW_INCHES), size)
    figure.savefig(path, format="png")
    cells: dict[int, bytes] = {}
    with Image.open(path) as image:
        for widget in widgets:
            if widget.type == "text":
                continue
            left, top = widget.x * COLUMN_INCHES * DPI, (HEADER_INCHES + widget.y * ROW_INCHES) * DPI
            right, bottom = left + widget.width * COLUMN_INCHES * DPI, top + widget.height * ROW_INCHES * DPI
            buffer = io.BytesIO()
            image.crop((round(left), round(top), round(right), round(bottom))).save(buffer, format="PNG")
            cells[widget.index] = buffer.getvalue()
    return cells


def draw_widget(
    figure: Figure,
    widget: Widget,
    window: Window,
    origin: tuple[float, float],
    cell: tuple[float, float],
    size: tuple[float, float],
) -> None:
    """Draw into the cell at `origin` (inches from the figure's top left) of a figure `size` inches big."""
    left, top = origin[0] + PAD_INCHES, origin[1] + PAD_INCHES
    width, height = cell[0] - 2 * PAD_INCHES, cell[1] - 2 * PAD_INCHES

    def rect(x: float, y_top: float, w: float, h: float) -> tuple[float, float, float, float]:
        return (x / size[0], 1 - (y_top + h) / size[1], w / size[0], h / size[1])

    frame = figure.add_axes(rect(left, top, width, height))
    frame.set_xticks([])
    frame.set_yticks([])
    for spine in frame.spines.values():
        spine.set_color("#d5dbdb")
    if widget.type == "text":
        _markdown(frame, widget.markdown)
        return
    characters = max(20, int(width * 15))
    notes = [line for note in widget.notes for line in textwrap.wrap(note, characters)]
    if notes:
        frame.text(
            0.01,
            0.01,
            "\n".join(notes),
            transform=frame.transAxes,
            fontsize=6,
            style="italic",
            color="#8a6d3b",
            va="bottom",
            ha="left",
        )
    title_height = TITLE_INCHES if widget.title else 0.05
    plot_height = height - title_height - TICKS_INCHES - len(notes) * NOTE_LINE_INCHES - 0.05
    if widget.title:
        frame.text(0.01, 1 - 0.02 / height, widget.title, transform=frame.transAxes, fontsize=8, va="top")
    if plot_height < 0.3 or widget.type != "metric":
        return
    axes = figure.add_axes(rect(left + 0.38, top + title_height, width - 0.48, plot_height))
    if widget.view == "singleValue":
        _single_value(axes, widget)
    else:
        _time_series(axes, widget, window)


def short_number(value: float, _position: object = None) -> str:
    """34.1M, not 3.41 with a 1e7 offset over the title (CloudWatch's style)."""
    for limit, suffix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= limit:
            return f"{value / limit:.3g}{suffix}"
    return f"{value:.3g}"


def _time_series(axes: Axes, widget: Widget, window: Window) -> None:
    axes.set_xlim(window.start, window.end)  # type: ignore[arg-type] # matplotlib takes datetimes
    axes.xaxis.set_major_formatter(mdates.DateFormatter("%H:%M", tz=UTC))  # type: ignore[no-untyped-call]
    axes.xaxis.set_major_locator(mdates.AutoDateLocator(minticks=3, maxticks=6, tz=UTC))  # type: ignore[no-untyped-call]
    axes.tick_params(labelsize=6, length=2, pad=1)
    axes.yaxis.set_major_formatter(FuncFormatter(short_number))
    axes.grid(True, color="#eeeeee", linewidth=0.6)
    for spine in ("top", "right"):
        axes.spines[spine].set_visible(False)
    right: Axes | None = None
    peaks = {"left": 0.0, "right": 0.0}
    for number, series in enumerate(widget.series):
        target = axes
        if series.y_axis == "right":
            right = right or axes.twinx()
            right.tick_params(labelsize=6, length=2, pad=1)
            right.yaxis.set_major_formatter(FuncFormatter(short_number))
            target = right
        color = series.color or PALETTE[number % len(PALETTE)]
        if series.values:
            peaks[series.y_axis if series.y_axis in peaks else "left"] = max(
                peaks.get(series.y_axis, 0.0), max(abs(v) for v in series.values)
            )
        target.plot(
            series.timestamps,  # type: ignore[arg-type] # datetimes are fine for matplotlib
            series.values,
            color=color,
            linewidth=1.2,
            marker="o",
            markersize=2.5 if len(series.values) > 3 else 4.5,  # a lone point must still be seen
            label=series.label if series.values else f"{series.label} (no data)",
        )
    off_scale: list[str] = []
    for annotation in widget.annotations:
        target = right if annotation.y_axis == "right" and right is not None else axes
        peak = peaks.get(annotation.y_axis, 0.0)
        if widget.has_data and abs(annotation.value) > OFF_SCALE_FACTOR * peak:
            off_scale.append(f"{annotation.label or 'threshold'}: {annotation.value:.4g} (off scale)")
            continue
        target.axhline(annotation.value, color=annotation.color or THRESHOLD_COLOR, linestyle="--", linewidth=0.9)
        target.annotate(
            annotation.label or f"{annotation.value:.4g}",
            xy=(0.99, annotation.value),
            xycoords=("axes fraction", "data"),
            fontsize=5.5,
            color=annotation.color or THRESHOLD_COLOR,
            ha="right",
            va="bottom",
        )
    for axis_name, target_axes in (("left", axes), ("right", right)):
        settings = widget.y_axis.get(axis_name, {})
        if target_axes is None or not isinstance(settings, dict):
            continue
        if settings.get("label"):
            target_axes.set_ylabel(str(settings["label"]), fontsize=6, labelpad=1)
        low, high = settings.get("min"), settings.get("max")
        if low is not None or high is not None:
            target_axes.set_ylim(bottom=low, top=high)
    if not widget.has_data:
        axes.text(
            0.5, 0.5, "No data in this time range", transform=axes.transAxes, ha="center", va="center", color="#999999"
        )
    handles, labels = axes.get_legend_handles_labels()
    if right is not None:
        more_handles, more_labels = right.get_legend_handles_labels()
        handles, labels = handles + more_handles, labels + more_labels
    labels += off_scale
    handles += [axes.plot([], [], linestyle="--", color=THRESHOLD_COLOR)[0] for _ in off_scale]
    if labels:
        axes.legend(handles, labels, fontsize=5.5, loc="upper left", framealpha=0.75, borderpad=0.3, handlelength=1.5)


def _single_value(axes: Axes, widget: Widget) -> None:
    axes.axis("off")
    count = max(1, len(widget.series))
    for number, series in enumerate(widget.series):
        x = (number + 0.5) / count
        value = f"{series.values[-1]:.4g}" if series.values else "–"
        axes.text(x, 0.55, value, ha="center", va="center", fontsize=18, transform=axes.transAxes)
        axes.text(x, 0.2, series.label, ha="center", va="center", fontsize=6, transform=axes.transAxes)


_LINK = re.compile(r"\[([^\]]*)\]\(([^)]*)\)")


def _plain(markdown_line: str) -> str:
    return _LINK.sub(r"\1", markdown_line).replace("**", "").replace("`", "")


def _markdown(axes: Axes, markdown: str) -> None:
    """Headings bold and larger, links as their text: enough for the dashboards' header widgets."""
    y = 0.5 if markdown.count("\n") == 0 else 0.95
    for line in markdown.splitlines() or [""]:
        heading = len(line) - len(line.lstrip("#"))
        text = _plain(line.lstrip("#").strip())
        size = {1: 12, 2: 10.5, 3: 9}.get(heading, 7.5)
        axes.text(
            0.005,
            y,
            text,
            transform=axes.transAxes,
            fontsize=size,
            fontweight="bold" if heading else "normal",
            va="center" if y == 0.5 else "top",
        )
        y -= 0.12


def markdown_html(markdown: str) -> str:
    """The text widgets' markdown subset as HTML: headings, bold, links (http/https only), paragraphs."""
    parts: list[str] = []
    for line in markdown.splitlines():
        heading = len(line) - len(line.lstrip("#"))
        text = html.escape(line.lstrip("#").strip())
        text = re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", text)
        text = _LINK.sub(
            lambda m: f'<a href="{m.group(2)}">{m.group(1)}</a>' if m.group(2).startswith("https://") else m.group(1),
            text,
        )
        parts.append(f"<h{min(heading + 1, 6)}>{text}</h{min(heading + 1, 6)}>" if heading else f"<p>{text}</p>")
    return "\n".join(parts)


def write_html(
    pages: Sequence[tuple[str, Sequence[Widget], Mapping[int, bytes]]],
    window: Window,
    path: Path,
    *,
    alarms: Sequence[AlarmLine] = (),
) -> None:
    """One self-contained page: every dashboard on its grid, each metric widget its PNG from draw_dashboard, then
    the alarms with links to their runbooks (the repository's files)."""
    sections: list[str] = []
    for name, widgets, cell_pngs in pages:
        cells: list[str] = []
        for widget in widgets:
            place = f"grid-column:{widget.x + 1} / span {widget.width};grid-row:{widget.y + 1} / span {widget.height}"
            attributes = f'class="widget {html.escape(widget.type)}" style="{place}" data-index="{widget.index}"'
            notes = html.escape(" · ".join(widget.notes))
            if widget.type == "text":
                cells.append(f"<div {attributes}>{markdown_html(widget.markdown)}</div>")
                continue
            png = base64.b64encode(cell_pngs[widget.index]).decode("ascii")
            alt = html.escape(widget.title or widget.type)
            data = "true" if widget.has_data else "false"
            cells.append(
                f'<div {attributes} data-has-data="{data}" title="{notes}">'
                f'<img alt="{alt}" src="data:image/png;base64,{png}"></div>'
            )
        sections.append(f'<section><h1>{html.escape(name)}</h1><div class="grid">{"".join(cells)}</div></section>')
    if alarms:
        sections.append(alarms_html(alarms))
    page = _PAGE.format(
        window=html.escape(f"{window.start:%Y-%m-%d %H:%M} – {window.end:%H:%M} UTC"),
        sections="\n".join(sections),
        row=int(ROW_INCHES * 96),
    )
    path.write_text(page, encoding="utf-8")


def alarms_html(alarms: Sequence[AlarmLine]) -> str:
    rows = []
    for alarm in alarms:
        runbook = html.escape(alarm.runbook)
        if alarm.runbook_href is not None:
            runbook = f'<a href="{html.escape(alarm.runbook_href)}">{runbook}</a>'
        rows.append(
            f"<tr><td>{html.escape(alarm.name)}</td><td>{html.escape(alarm.condition)}</td><td>{runbook}</td></tr>"
        )
    return (
        '<section class="alarms"><h1>Alarms</h1><table><tr><th>alarm</th><th>when</th><th>runbook</th></tr>'
        + "".join(rows)
        + "</table></section>"
    )


_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>imgops dashboards</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 16px; background: #f2f3f3; color: #16191f; }}
.grid {{ display: grid; grid-template-columns: repeat(24, 1fr); grid-auto-rows: {row}px; gap: 4px; }}
.widget {{ background: white; border: 1px solid #d5dbdb; overflow: hidden; }}
.widget.text {{ padding: 0 8px; }}
.widget.text h2, .widget.text h3, .widget.text h4, .widget.text p {{ margin: 4px 0; }}
.widget img {{ width: 100%; height: 100%; object-fit: contain; display: block; }}
footer {{ color: #687078; font-size: 12px; margin-top: 12px; }}
.alarms table {{ border-collapse: collapse; background: white; font-size: 13px; }}
.alarms td, .alarms th {{ border: 1px solid #d5dbdb; padding: 3px 8px; text-align: left; }}
</style></head>
<body>
<p>Rendered locally from the synthesized dashboards and the local CloudWatch, {window}.</p>
{sections}
<footer>Each widget notes what it could not draw or drew differently: metric math is evaluated here, not by the
CloudWatch endpoint; a percentile it cannot compute is drawn as Maximum.</footer>
</body></html>
"""
