"""Standard margin against portfolio margin for two hedged portfolios along a price path.

Cases (perps, margin tables and start prices from configs/devnet.toml; LTV 0.5 for BTC and
HYPE, hyperliquid-core.md 4.3):
- carry_btc: the docs' carry trade, 1 BTC spot (the devnet's UBTC, priced as BTC) + 1 BTC
  short perp at 10x (margin table 56) from 100,000 USDC, with just the perp's initial margin
  (10,000 USDC) in cash.
- hype_hedge: 1,000 HYPE spot + 1,000 HYPE short perp at 10x (single tier 10x) from the
  devnet's oracle price of 30 USDC, with the perp's initial margin (3,000 USDC) in cash.
Per-user caps are the latest docs' (USDC borrow 50M, BTC supply 200, HYPE supply 1M); they do
not bind here.

For each price from --low to --high percent of the start, in --step percent steps, the table
gives standard margin (required = perp IM, free = perp account value - IM, liquidatable) and
portfolio margin (required = USDC still needed once the borrow capacity is used, free = own
funds + capacity - IM, borrowed, ratio, liquidatable; "limit" when the capacity no longer
covers the IM). Liquidation prices and the PM borrow limit are found along the path and then
exactly, to the micro-USDC, by bisection. Capital freed = standard required - PM required at
the start price. One SVG per case, free collateral against price under both regimes with the
PM borrow and the liquidation points, goes to --out (default margin_report/).

    .venv/bin/python scripts/margin_report.py [--out DIR] [--low 50] [--high 250] [--step 5]
        [--json]
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tomllib
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from protocol.fixed import format_fixed, parse_fixed  # noqa: E402
from protocol.margin import initial_margin  # noqa: E402
from protocol.markets import Markets, load_markets  # noqa: E402
from protocol.portfolio import (  # noqa: E402
    RATIO_SCALE,
    TOKEN_SCALE,
    MarginPoint,
    PerpPosition,
    Portfolio,
    Regime,
    SpotHolding,
    capital_freed,
    compare_margin,
    find_borrow_limit_price,
    find_liquidation_price,
    first_liquidation,
    margin_at,
)

CONFIG = ROOT / "configs" / "devnet.toml"
USD_SCALE = 10**6  # micro-USDC, as protocol.fixed.USD_SCALE
LTV_HALF = 500_000
USER_BORROW_CAP_USDC = 50_000_000 * USD_SCALE
USER_SUPPLY_CAP = {"BTC": 200 * TOKEN_SCALE, "HYPE": 1_000_000 * TOKEN_SCALE}
PLOT_STEPS_PER_STEP = 10  # the plot samples ten times finer than the table


class Case(NamedTuple):
    name: str
    title: str
    coin: str
    start_px: int  # micro-USDC per token
    portfolio: Portfolio


class Crossings(NamedTuple):
    """First prices, to the micro-USDC, going up and down from the start (None: not in range)."""

    up: int | None
    down: int | None


class Report(NamedTuple):
    case: Case
    points: list[MarginPoint]
    liquidation: dict[Regime, Crossings]
    borrow_limit: Crossings
    start: MarginPoint


def load_default_markets() -> Markets:
    with CONFIG.open("rb") as f:
        return load_markets(tomllib.load(f)["genesis"])


def oracle_start(coin: str) -> int:
    """The coin's oracle price in configs/devnet.toml, micro-USDC per token."""
    with CONFIG.open("rb") as f:
        text = tomllib.load(f)["oracle"][coin]["px"]
    px = parse_fixed(str(text), 6)
    if px is None:
        raise SystemExit(f"bad oracle price for {coin}: {text!r}")
    return px


def hedge(markets: Markets, name: str, title: str, coin: str, tokens: int, start_px: int) -> Case:
    """`tokens` of spot + the same size short on the perp at 10x, cash = the perp's IM."""
    perp = next(p for p in markets.perps if p.name == coin)
    table = markets.margin_table(perp.margin_table_id)
    size = tokens * TOKEN_SCALE
    cash = initial_margin(tokens * start_px, 10)
    portfolio = Portfolio(
        usdc=cash,
        spot=(SpotHolding(coin, size, LTV_HALF, USER_SUPPLY_CAP[coin]),),
        perps=(PerpPosition(coin, -size, start_px, 10, table),),
        borrow_cap=USER_BORROW_CAP_USDC,
    )
    return Case(name, title, coin, start_px, portfolio)


def default_cases(markets: Markets) -> list[Case]:
    return [
        hedge(
            markets,
            "carry_btc",
            "BTC carry trade: 1 BTC spot + 1 BTC short perp at 10x, 10,000 USDC cash",
            "BTC",
            1,
            100_000 * USD_SCALE,
        ),
        hedge(
            markets,
            "hype_hedge",
            "HYPE hedge: 1,000 HYPE spot + 1,000 HYPE short perp at 10x, 3,000 USDC cash",
            "HYPE",
            1_000,
            oracle_start("HYPE"),
        ),
    ]


def path(start_px: int, low_bps: int, high_bps: int, step_bps: int) -> list[int]:
    """Prices from low to high basis points of the start, rounded down to the micro-USDC."""
    return [start_px * bps // 10_000 for bps in range(low_bps, high_bps + 1, step_bps)]


def crossing(case: Case, prices: Sequence[int], regime: Regime | None) -> int | None:
    """Walk `prices` (starting at the start price) to the first liquidatable point (or, for
    regime None, the first borrow-limited one) and bisect between it and the point before."""
    points = compare_margin(case.portfolio, [{case.coin: px} for px in prices])
    if regime is None:
        hit = next((p for p in points if p.portfolio.borrow_limited), None)
    else:
        hit = first_liquidation(points, regime)
    if hit is None:
        return None
    index = next(i for i, point in enumerate(points) if point is hit)
    if index == 0:
        return prices[0]  # already there at the start
    base = {case.coin: case.start_px}
    before, after = prices[index - 1], prices[index]
    if regime is None:
        return find_borrow_limit_price(case.portfolio, base, case.coin, before, after)
    return find_liquidation_price(case.portfolio, base, case.coin, before, after, regime)


def build_report(case: Case, low_bps: int, high_bps: int, step_bps: int) -> Report:
    prices = path(case.start_px, low_bps, high_bps, step_bps)
    points = compare_margin(case.portfolio, [{case.coin: px} for px in prices])
    up = [case.start_px, *(px for px in prices if px > case.start_px)]
    down = [case.start_px, *(px for px in reversed(prices) if px < case.start_px)]
    liquidation: dict[Regime, Crossings] = {
        regime: Crossings(crossing(case, up, regime), crossing(case, down, regime))
        for regime in ("standard", "portfolio")
    }
    borrow_limit = Crossings(crossing(case, up, None), crossing(case, down, None))
    start = margin_at(case.portfolio, {case.coin: case.start_px})
    return Report(case, points, liquidation, borrow_limit, start)


# Text and JSON.


def usd(value: int) -> str:
    """Whole USDC with thousands separators (for the table)."""
    return f"{value / USD_SCALE:,.0f}"


def px_text(value: int | None) -> str:
    """A price to the micro-USDC, without trailing zeros."""
    return "none in range" if value is None else f"{value / USD_SCALE:,.6f}".rstrip("0").rstrip(".")


def px_short(value: int) -> str:
    """A price for the table: whole USDC from 1,000 up, cents below."""
    return (
        f"{value / USD_SCALE:,.0f}" if value >= 1_000 * USD_SCALE else f"{value / USD_SCALE:,.2f}"
    )


def ratio_text(ratio: int | None) -> str:
    return "inf" if ratio is None else f"{ratio / RATIO_SCALE:.3f}"


def print_report(report: Report, svg: Path) -> None:
    case = report.case
    print(f"== {case.title}")
    header = (
        f"{'price':>10} | {'std req':>9} {'std free':>10} {'liq':>3} | "
        f"{'PM req':>7} {'PM free':>9} {'borrowed':>9} {'ratio':>6} {'state':>5}"
    )
    print(header)
    print("-" * len(header))
    for point in report.points:
        std, pm = point.standard, point.portfolio
        state = "LIQ" if pm.liquidatable else "limit" if pm.borrow_limited else ""
        print(
            f"{px_short(point.prices[case.coin]):>10} | {usd(std.required):>9} {usd(std.free):>10} "
            f"{'LIQ' if std.liquidatable else '':>3} | {usd(pm.required):>7} {usd(pm.free):>9} "
            f"{usd(pm.borrowed):>9} {ratio_text(pm.ratio):>6} {state:>5}"
        )
    start = report.start
    print(
        f"at the start ({px_text(case.start_px)}): standard requires {usd(start.standard.required)}"
        f" USDC ({usd(start.standard.free)} free), PM {usd(start.portfolio.required)} USDC"
        f" ({usd(start.portfolio.free)} free): PM frees {usd(capital_freed(start))} USDC"
    )
    for label, crossings in (
        ("standard liquidation", report.liquidation["standard"]),
        ("PM liquidation", report.liquidation["portfolio"]),
        ("PM borrow limit", report.borrow_limit),
    ):
        print(f"{label:>21}: up {px_text(crossings.up)}, down {px_text(crossings.down)}")
    print(f"plot: {svg}")
    print()


def money(value: int) -> str:
    return format_fixed(value, 6)


def report_json(report: Report, svg: Path) -> dict[str, Any]:
    def crossings(c: Crossings) -> dict[str, str | None]:
        return {
            "up": None if c.up is None else money(c.up),
            "down": None if c.down is None else money(c.down),
        }

    points = []
    for point in report.points:
        std, pm = point.standard, point.portfolio
        points.append(
            {
                "price": money(point.prices[report.case.coin]),
                "standard": {
                    "required": money(std.required),
                    "free": money(std.free),
                    "accountValue": money(std.account_value),
                    "maintenance": money(std.maintenance),
                    "liquidatable": std.liquidatable,
                },
                "portfolio": {
                    "required": money(pm.required),
                    "free": money(pm.free),
                    "borrowed": money(pm.borrowed),
                    "capacity": money(pm.capacity),
                    "requirement": money(pm.requirement),
                    "liquidationValue": money(pm.liquidation_value),
                    "ratio": None if pm.ratio is None else format_fixed(pm.ratio, 6),
                    "borrowLimited": pm.borrow_limited,
                    "liquidatable": pm.liquidatable,
                },
            }
        )
    return {
        "case": report.case.name,
        "title": report.case.title,
        "coin": report.case.coin,
        "startPrice": money(report.case.start_px),
        "capitalFreed": money(capital_freed(report.start)),
        "requiredAtStart": {
            "standard": money(report.start.standard.required),
            "portfolio": money(report.start.portfolio.required),
        },
        "freeAtStart": {
            "standard": money(report.start.standard.free),
            "portfolio": money(report.start.portfolio.free),
        },
        "liquidationPrice": {
            "standard": crossings(report.liquidation["standard"]),
            "portfolio": crossings(report.liquidation["portfolio"]),
        },
        "borrowLimitPrice": crossings(report.borrow_limit),
        "svg": str(svg),
        "points": points,
    }


# SVG, by hand.

WIDTH, HEIGHT = 960, 560
LEFT, RIGHT, TOP, BOTTOM = 90, 30, 84, 70
STANDARD_COLOR, PM_COLOR, BORROW_COLOR = "#d62728", "#1f77b4", "#7f7f7f"


def nice_step(span: float, target: int) -> float:
    """A 1-2-5 step giving about `target` ticks over `span`."""
    raw = span / target
    power = 10.0 ** math.floor(math.log10(raw))
    return next(f * power for f in (1, 2, 5, 10) if f * power >= raw)


def svg_escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def render_svg(report: Report, plot_points: list[MarginPoint]) -> str:
    case = report.case
    xs = [p.prices[case.coin] / USD_SCALE for p in plot_points]
    series = {
        "standard": [p.standard.free / USD_SCALE for p in plot_points],
        "portfolio": [p.portfolio.free / USD_SCALE for p in plot_points],
        "borrowed": [p.portfolio.borrowed / USD_SCALE for p in plot_points],
    }
    x_lo, x_hi = min(xs), max(xs)
    values = [v for line in series.values() for v in line] + [0.0]
    y_lo, y_hi = min(values), max(values)
    pad = (y_hi - y_lo) * 0.05 or 1.0
    y_lo, y_hi = y_lo - pad, y_hi + pad
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM

    def sx(x: float) -> float:
        return LEFT + (x - x_lo) / (x_hi - x_lo) * plot_w

    def sy(y: float) -> float:
        return TOP + (y_hi - y) / (y_hi - y_lo) * plot_h

    out: list[str] = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" '
        f'viewBox="0 0 {WIDTH} {HEIGHT}" font-family="Helvetica, Arial, sans-serif" '
        f'font-size="12">',
        f'<rect width="{WIDTH}" height="{HEIGHT}" fill="white"/>',
        f'<text x="{LEFT}" y="26" font-size="16" font-weight="bold">'
        f"{svg_escape(case.title)}</text>",
        f'<text x="{LEFT}" y="46" fill="#444">Free collateral against {case.coin} price; '
        "portfolio margin borrows USDC against the spot at LTV 0.5.</text>",
        f'<text x="{LEFT}" y="64" fill="#444">Cash needed at the start: standard '
        f"{usd(report.start.standard.required)} USDC, portfolio margin "
        f"{usd(report.start.portfolio.required)} USDC, so PM frees "
        f"{usd(capital_freed(report.start))} USDC.</text>",
    ]
    # Grid and ticks.
    x_step = nice_step(x_hi - x_lo, 10)
    tick = (x_lo // x_step + 1) * x_step if x_lo % x_step else x_lo
    while tick <= x_hi + 1e-9:
        x = sx(tick)
        out.append(
            f'<line x1="{x:.1f}" y1="{TOP}" x2="{x:.1f}" y2="{TOP + plot_h}" stroke="#eee"/>'
        )
        out.append(
            f'<text x="{x:.1f}" y="{TOP + plot_h + 18}" text-anchor="middle">{tick:,.0f}</text>'
        )
        tick += x_step
    y_step = nice_step(y_hi - y_lo, 8)
    tick = (y_lo // y_step + 1) * y_step
    while tick <= y_hi:
        y = sy(tick)
        out.append(
            f'<line x1="{LEFT}" y1="{y:.1f}" x2="{LEFT + plot_w}" y2="{y:.1f}" stroke="#eee"/>'
        )
        out.append(f'<text x="{LEFT - 8}" y="{y + 4:.1f}" text-anchor="end">{tick:,.0f}</text>')
        tick += y_step
    out.append(
        f'<line x1="{LEFT}" y1="{sy(0):.1f}" x2="{LEFT + plot_w}" y2="{sy(0):.1f}" '
        f'stroke="#000" stroke-width="1"/>'
    )
    out.append(
        f'<rect x="{LEFT}" y="{TOP}" width="{plot_w}" height="{plot_h}" fill="none" stroke="#999"/>'
    )
    out.append(
        f'<text x="{LEFT + plot_w / 2:.1f}" y="{HEIGHT - 22}" text-anchor="middle">'
        f"{case.coin} price (USDC)</text>"
    )
    out.append(
        f'<text transform="translate(22 {TOP + plot_h / 2:.1f}) rotate(-90)" '
        f'text-anchor="middle">USDC</text>'
    )
    # Start price.
    x0 = sx(case.start_px / USD_SCALE)
    out.append(
        f'<line x1="{x0:.1f}" y1="{TOP}" x2="{x0:.1f}" y2="{TOP + plot_h}" stroke="#555" '
        f'stroke-dasharray="2 3"/>'
    )
    out.append(
        f'<text x="{x0 + 4:.1f}" y="{TOP + 14}" fill="#555">start {case.start_px / USD_SCALE:,.0f}'
        "</text>"
    )

    def polyline(ys: list[float], mask: list[bool], color: str, extra: str) -> None:
        """Runs of consecutive points where mask holds, as one polyline each."""
        run: list[str] = []
        for x, y, keep in [*zip(xs, ys, mask, strict=True), (0.0, 0.0, False)]:
            if keep:
                run.append(f"{sx(x):.1f},{sy(y):.1f}")
            elif run:
                out.append(
                    f'<polyline points="{" ".join(run)}" fill="none" stroke="{color}" {extra}/>'
                )
                run = []

    std_liq = [p.standard.liquidatable for p in plot_points]
    pm_liq = [p.portfolio.liquidatable for p in plot_points]
    everywhere = [True] * len(xs)
    polyline(
        series["borrowed"], everywhere, BORROW_COLOR, 'stroke-width="1.5" stroke-dasharray="6 4"'
    )
    for name, liq, color in (
        ("standard", std_liq, STANDARD_COLOR),
        ("portfolio", pm_liq, PM_COLOR),
    ):
        polyline(series[name], [not v for v in liq], color, 'stroke-width="2.5"')
        polyline(series[name], liq, color, 'stroke-width="1.5" stroke-opacity="0.35"')

    # Event markers: liquidation points on their curves, the PM borrow limit on the borrow.

    def marker(px: int | None, ys_of: str, color: str, label: str, shape: str) -> None:
        if px is None:
            return
        point = margin_at(case.portfolio, {case.coin: px})
        value = {
            "standard": point.standard.free,
            "portfolio": point.portfolio.free,
            "borrowed": point.portfolio.borrowed,
        }[ys_of]
        x, y = sx(px / USD_SCALE), sy(value / USD_SCALE)
        out.append(
            f'<line x1="{x:.1f}" y1="{TOP}" x2="{x:.1f}" y2="{TOP + plot_h}" stroke="{color}" '
            f'stroke-dasharray="4 4" stroke-opacity="0.6"/>'
        )
        if shape == "circle":
            out.append(
                f'<circle cx="{x:.1f}" cy="{y:.1f}" r="6" fill="white" stroke="{color}" '
                f'stroke-width="2.5"/>'
            )
        else:
            out.append(
                f'<rect x="{x - 5:.1f}" y="{y - 5:.1f}" width="10" height="10" fill="white" '
                f'stroke="{color}" stroke-width="2"/>'
            )
        text = f"{label} {px / USD_SCALE:,.2f}"
        anchor, dx = ("end", -10) if x > LEFT + plot_w * 0.75 else ("start", 10)
        out.append(
            f'<text x="{x + dx:.1f}" y="{y + 24:.1f}" text-anchor="{anchor}" '
            f'fill="{color}" font-weight="bold" stroke="white" stroke-width="4" '
            f'paint-order="stroke">{svg_escape(text)}</text>'
        )

    for crossings, ys_of, color, label, shape in (
        (report.liquidation["standard"], "standard", STANDARD_COLOR, "standard liq.", "circle"),
        (report.borrow_limit, "borrowed", BORROW_COLOR, "PM borrow limit", "square"),
        (report.liquidation["portfolio"], "portfolio", PM_COLOR, "PM liq.", "circle"),
    ):
        marker(crossings.down, ys_of, color, label, shape)
        marker(crossings.up, ys_of, color, label, shape)

    # Legend, bottom left inside the plot.
    legend = [
        (STANDARD_COLOR, "", "standard: free = perp value - IM"),
        (PM_COLOR, "", "portfolio margin: free = own funds + borrow capacity - IM"),
        (BORROW_COLOR, ' stroke-dasharray="6 4"', "PM borrowed USDC"),
        ("#999", "", "faded: liquidatable"),
    ]
    lx, ly = LEFT + 12, TOP + plot_h - 14 - 18 * (len(legend) - 1)
    out.append(
        f'<rect x="{lx - 6}" y="{ly - 14}" width="360" height="{18 * len(legend) + 8}" '
        f'fill="white" fill-opacity="0.85" stroke="#ccc"/>'
    )
    for i, (color, dash, text) in enumerate(legend):
        y = ly + 18 * i
        out.append(
            f'<line x1="{lx}" y1="{y - 4}" x2="{lx + 28}" y2="{y - 4}" stroke="{color}" '
            f'stroke-width="2.5"{dash}/>'
        )
        out.append(f'<text x="{lx + 36}" y="{y}">{svg_escape(text)}</text>')
    out.append("</svg>")
    return "\n".join(out) + "\n"


def plot_points(report: Report, low_bps: int, high_bps: int, step_bps: int) -> list[MarginPoint]:
    """The fine path plus the event prices, so each marker sits on its curve's bend."""
    fine = max(step_bps // PLOT_STEPS_PER_STEP, 1)
    prices = set(path(report.case.start_px, low_bps, high_bps, fine))
    for crossings in (*report.liquidation.values(), report.borrow_limit):
        for px in crossings:
            if px is not None:
                prices.update((px - 1, px))
    coin = report.case.coin
    return compare_margin(report.case.portfolio, [{coin: px} for px in sorted(prices)])


def percent_bps(text: str) -> int:
    """A percentage with up to two decimals, as basis points."""
    value = parse_fixed(text, 2)
    if value is None or value <= 0:
        raise argparse.ArgumentTypeError(f"not a positive percentage: {text!r}")
    return value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--out", type=Path, default=Path("margin_report"), help="SVG directory")
    parser.add_argument("--low", type=percent_bps, default=5_000, help="lowest %% of start")
    parser.add_argument("--high", type=percent_bps, default=25_000, help="highest %% of start")
    parser.add_argument("--step", type=percent_bps, default=500, help="table step, %% of start")
    parser.add_argument("--json", action="store_true", help="print the numbers as JSON")
    args = parser.parse_args(argv)
    if args.low > 10_000 or args.high < 10_000 or args.low >= args.high:
        parser.error("need --low <= 100 <= --high and --low < --high")

    markets = load_default_markets()
    args.out.mkdir(parents=True, exist_ok=True)
    results = []
    for case in default_cases(markets):
        report = build_report(case, args.low, args.high, args.step)
        svg = args.out / f"{case.name}.svg"
        svg.write_text(render_svg(report, plot_points(report, args.low, args.high, args.step)))
        if args.json:
            results.append(report_json(report, svg))
        else:
            print_report(report, svg)
    if args.json:
        print(json.dumps({"cases": results}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
