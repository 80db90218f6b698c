"""The month-end report's charts as PNGs, and the number formatting the report shares with them.

`money_by_method_chart(report)` and `trend_chart(report)` answer an `InlineImage` the e-mail
embeds (`<img src="cid:...">`) and the saved file carries as a data: URI, or None when there
is nothing to draw (the report then says so in words). They draw on a `matplotlib.figure.Figure`
with the Agg canvas directly, never through `pyplot`: no global figure registry, nothing to
close, safe in a worker thread of the flow.

The bytes are deterministic for the same report: fixed size and dpi, matplotlib's bundled
DejaVu Sans, and no "Software" text chunk; so a re-run of the same month produces the same
attachment. The charts are a picture of the tables next to them, never the figures of
record: amounts become floats only for drawing, the labels are formatted from minor units.

Each currency gets its own panel on its own scale (EUR and SEK differ tenfold; one axis would
flatten the smaller currency): two panels side by side fill 640 x 300 px, more currencies add
rows of the same height.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from decimal import Decimal
from io import BytesIO
from typing import Any

from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter

from returnbridge.connectors.email.message import InlineImage
from returnbridge.connectors.reveni.models import currency_exponent
from returnbridge.monthend.model import (
    PAID_BY_LABELS,
    MonthEndReport,
    PaidBy,
    TrendPoint,
    money_text,
)

# A thin space groups thousands ("12 345.67 EUR"): read the same way in every locale, unlike a
# comma or a dot, and DejaVu Sans and the usual mail fonts all have the glyph.
THIN_SPACE = "\u2009"

MONTH_NAMES = (
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
)

PANEL_WIDTH_IN = 3.2  # two panels side by side: 640 px at DPI
PANEL_HEIGHT_IN = 3.0  # one row of panels: 300 px at DPI
DPI = 100
MAX_COLUMNS = 2

MONEY_BY_METHOD_CID = "money-by-method@returnbridge"
TREND_CID = "trend-12m@returnbridge"

# Short labels for the bars (the tables carry the long `PAID_BY_LABELS`).
PAID_BY_SHORT: dict[PaidBy, str] = {
    PaidBy.REVENI_INSTANT: "Reveni instant",
    PaidBy.PSP_SUCCEEDED: "PSP succeeded",
    PaidBy.PSP_PENDING: "PSP pending",
    PaidBy.PSP_FAILED: "PSP failed",
    PaidBy.STORE_CREDIT: "Store credit",
}
PAID_BY_COLOURS: dict[PaidBy, str] = {
    PaidBy.REVENI_INSTANT: "#0969da",
    PaidBy.PSP_SUCCEEDED: "#1a7f37",
    PaidBy.PSP_PENDING: "#bf8700",
    PaidBy.PSP_FAILED: "#cf222e",
    PaidBy.STORE_CREDIT: "#8250df",
}
RETURNS_COLOUR = "#c8d1dc"
LINE_COLOUR = "#0b3d91"
TEXT_COLOUR = "#1f2328"
GRID_COLOUR = "#e6e9ed"


# --------------------------------------------------------------------------- formatting


def group_thousands(number: str, sep: str = THIN_SPACE) -> str:
    """`number` ("-1234567.50", "1500") with its integer digits grouped by three."""
    sign = "-" if number.startswith("-") else ""
    digits = number.lstrip("+-")
    whole, dot, fraction = digits.partition(".")
    groups: list[str] = []
    while len(whole) > 3:
        groups.insert(0, whole[-3:])
        whole = whole[:-3]
    groups.insert(0, whole)
    return f"{sign}{sep.join(groups)}{dot}{fraction}"


def format_money(minor: int, currency: str) -> str:
    """`minor` units of `currency` for people: "12 345.67 EUR", "-3.00 SEK", "1 500 JPY" (the
    currency's own number of decimals, thousands grouped, the code after)."""
    return f"{group_thousands(money_text(minor, currency))} {currency}"


def format_count(count: int) -> str:
    return group_thousands(str(count))


def month_title(month: str) -> str:
    """The month for people: "2026-10" -> "October 2026", in English whatever the locale."""
    year, _, number = month.partition("-")
    try:
        return f"{MONTH_NAMES[int(number) - 1]} {year}"
    except (ValueError, IndexError):
        return month


def _major(minor: int, currency: str) -> float:
    """For drawing only: the amount in major units."""
    return float(Decimal(minor).scaleb(-currency_exponent(currency)))


def _axis_money(value: float, _position: Any) -> str:
    """Tick labels: whole major units, thousands grouped ("12 000")."""
    return group_thousands(f"{value:.0f}")


# --------------------------------------------------------------------------- the canvas


def _figure(panels: int) -> tuple[Figure, list[Axes]]:
    """A figure of `panels` panels, at most two a row, 640 x 300 px a row."""
    columns = min(panels, MAX_COLUMNS)
    rows = math.ceil(panels / MAX_COLUMNS)
    figure = Figure(
        figsize=(PANEL_WIDTH_IN * MAX_COLUMNS, PANEL_HEIGHT_IN * rows),
        dpi=DPI,
        layout="constrained",
        facecolor="white",
    )
    FigureCanvasAgg(figure)
    grid = figure.add_gridspec(rows, columns)
    axes = [figure.add_subplot(grid[index // columns, index % columns]) for index in range(panels)]
    return figure, axes


def _png(figure: Figure) -> bytes:
    buffer = BytesIO()
    figure.savefig(buffer, format="png", dpi=DPI, metadata={"Software": None})
    return buffer.getvalue()


def png_size(png: bytes) -> tuple[int, int]:
    """(width, height) in pixels from a PNG's header, for the `<img>` tag's attributes."""
    if png[:8] != b"\x89PNG\r\n\x1a\n" or len(png) < 24:
        raise ValueError("not a PNG")
    return int.from_bytes(png[16:20], "big"), int.from_bytes(png[20:24], "big")


def _style(axes: Axes) -> None:
    axes.tick_params(labelsize=7, colors=TEXT_COLOUR, length=2)
    for side in ("top", "right"):
        axes.spines[side].set_visible(False)
    for side in ("left", "bottom"):
        axes.spines[side].set_color("#8c959f")


# --------------------------------------------------------------------------- money out


def _money_by_currency(report: MonthEndReport) -> dict[str, dict[PaidBy, tuple[int, int]]]:
    """currency -> paid_by -> (count, minor), rows of the same kind added up."""
    out: dict[str, dict[PaidBy, tuple[int, int]]] = {}
    for row in report.money_out:
        methods = out.setdefault(row.currency, {})
        count, minor = methods.get(row.paid_by, (0, 0))
        methods[row.paid_by] = (count + row.count, minor + row.minor)
    return {currency: out[currency] for currency in sorted(out)}


def money_by_method_chart(report: MonthEndReport) -> InlineImage | None:
    """Money out of the month by who paid and how, one panel of horizontal bars per currency;
    None when no money went out (no rows, or every amount zero)."""
    by_currency = {
        currency: methods
        for currency, methods in _money_by_currency(report).items()
        if any(minor for _, minor in methods.values())
    }
    if not by_currency:
        return None
    figure, panels = _figure(len(by_currency))
    methods = list(PaidBy)
    positions = list(range(len(methods)))[::-1]  # the first method on top
    pairs = zip(panels, by_currency.items(), strict=True)
    for index, (axes, (currency, figures)) in enumerate(pairs):
        amounts = [_major(figures.get(m, (0, 0))[1], currency) for m in methods]
        axes.barh(
            positions,
            amounts,
            height=0.62,
            color=[PAID_BY_COLOURS[m] for m in methods],
        )
        low = min(0.0, *amounts)
        high = max(0.0, *amounts)
        span = (high - low) or 1.0
        axes.set_xlim(low - (0.05 * span if low < 0 else 0), high + 0.45 * span)
        for position, method, amount in zip(positions, methods, amounts, strict=True):
            count, minor = figures.get(method, (0, 0))
            axes.text(
                max(amount, 0.0) + 0.02 * span,
                position,
                f"{format_money(minor, currency)} ({format_count(count)})",
                va="center",
                fontsize=6.5,
                color=TEXT_COLOUR,
            )
        axes.set_yticks(positions, [PAID_BY_SHORT[m] for m in methods])
        if index % MAX_COLUMNS:
            axes.tick_params(labelleft=False)
        axes.xaxis.set_major_formatter(FuncFormatter(_axis_money))
        axes.locator_params(axis="x", nbins=4)
        axes.axvline(0, color="#8c959f", linewidth=0.6)
        axes.grid(axis="x", color=GRID_COLOUR, linewidth=0.6)
        axes.set_axisbelow(True)
        axes.set_title(f"Money out, {currency}", fontsize=8.5, color=TEXT_COLOUR, loc="left")
        _style(axes)
    described = "; ".join(
        f"{currency}: "
        + ", ".join(
            f"{PAID_BY_LABELS[m]} {format_money(figures[m][1], currency)}"
            f" ({format_count(figures[m][0])})"
            for m in methods
            if m in figures
        )
        for currency, figures in by_currency.items()
    )
    return InlineImage(
        cid=MONEY_BY_METHOD_CID,
        filename="money-by-method.png",
        png=_png(figure),
        alt=f"Money out in {month_title(report.month)} by who paid and how. {described}.",
    )


# --------------------------------------------------------------------------- trend


def trend_months(points: Iterable[TrendPoint]) -> list[str]:
    """The trend's months, oldest first, at most the last twelve."""
    return sorted({point.month for point in points})[-12:]


def _month_tick(month: str, first: bool) -> str:
    """The tick label: an initial under most bars (twelve labels fit half the width), with the
    year's last two digits under January and the first month, so the year is never in doubt."""
    year, _, number = month.partition("-")
    try:
        initial = MONTH_NAMES[int(number) - 1][0]
    except (ValueError, IndexError):
        return month
    return f"{initial}\n'{year[-2:]}" if first or number == "01" else initial


def trend_chart(report: MonthEndReport) -> InlineImage | None:
    """The last twelve months per currency: bars for the returns counted under the currency,
    a line for the sum refunded (right axis); None when the report has no trend points or
    none with a currency (returns without any refund are in the table, not the chart)."""
    months = trend_months(report.trend)
    shown = set(months)
    series: dict[str, dict[str, TrendPoint]] = {}
    for point in report.trend:
        if point.currency and point.month in shown:
            series.setdefault(point.currency, {})[point.month] = point
    if not series:
        return None
    currencies = sorted(series)
    figure, panels = _figure(len(currencies))
    xs = list(range(len(months)))
    ticks = [_month_tick(month, index == 0) for index, month in enumerate(months)]
    for axes, currency in zip(panels, currencies, strict=True):
        points = series[currency]
        returns = [points[m].returns if m in points else 0 for m in months]
        refunded = [
            _major(points[m].refunds_minor, currency) if m in points else 0.0 for m in months
        ]
        axes.bar(xs, returns, width=0.7, color=RETURNS_COLOUR, label="Returns")
        axes.set_ylim(0, max(1, *returns) * 1.15)
        axes.set_ylabel("Returns", fontsize=7, color=TEXT_COLOUR)
        axes.set_xticks(xs, ticks)
        axes.grid(axis="y", color=GRID_COLOUR, linewidth=0.6)
        axes.set_axisbelow(True)
        _style(axes)
        money = axes.twinx()
        money.plot(xs, refunded, color=LINE_COLOUR, linewidth=1.6, marker="o", markersize=2.5)
        money.set_ylim(0, max(1.0, *refunded) * 1.15)
        money.yaxis.set_major_formatter(FuncFormatter(_axis_money))
        money.locator_params(axis="y", nbins=4)
        money.set_ylabel(f"Approved ({currency})", fontsize=7, color=LINE_COLOUR)
        money.tick_params(labelsize=7, colors=LINE_COLOUR, length=2)
        for side in ("top", "left", "bottom"):
            money.spines[side].set_visible(False)
        money.spines["right"].set_color("#8c959f")
        axes.set_title(
            f"{currency}: returns (bars), refunds approved (line)",
            fontsize=8.5,
            color=TEXT_COLOUR,
            loc="left",
        )
    described = "; ".join(
        f"{currency}: {format_count(sum(p.returns for p in series[currency].values()))} returns, "
        f"{format_count(sum(p.refunds for p in series[currency].values()))} refunds approved in "
        f"Reveni, {format_money(sum(p.refunds_minor for p in series[currency].values()), currency)}"
        for currency in currencies
    )
    return InlineImage(
        cid=TREND_CID,
        filename="trend-12m.png",
        png=_png(figure),
        alt=(
            f"Returns and refunds per month from {month_title(months[0])} to "
            f"{month_title(months[-1])}, per currency. In total: {described}."
        ),
    )
