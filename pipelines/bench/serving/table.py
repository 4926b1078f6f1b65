"""`make bench-serve`'s figures as a person reads them: a cell a row, each model's in-process
ceiling, and what an ensemble costs against one tagger (measured by
pipelines/bench/serving/load.py)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Cell:
    workers: int
    sentences_per_request: int
    clients: int
    requests: int
    errors: int
    seconds: float
    requests_per_second: float
    sentences_per_second: float
    tokens_per_second: float
    p50_ms: float
    p95_ms: float
    p99_ms: float
    members: int = 1  # taggers in the model: 1, or an ensemble's


def format_table(cells: list[Cell], ceilings: dict[int, dict[int, float]]) -> str:
    """`ceilings`: sentences a second in process, by members, then sentences a request."""
    lines = [
        "| members | workers | sentences a request | clients | requests/s | sentences/s "
        "| tokens/s | p50 ms | p95 ms | p99 ms | errors | of the in-process ceiling |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for c in cells:
        share = c.sentences_per_second / ceilings[c.members][c.sentences_per_request]
        lines.append(
            f"| {c.members} | {c.workers} | {c.sentences_per_request} | {c.clients} | "
            f"{c.requests_per_second:,.1f} | {c.sentences_per_second:,.0f} | "
            f"{c.tokens_per_second:,.0f} | {c.p50_ms:.0f} | {c.p95_ms:.0f} | {c.p99_ms:.0f} "
            f"| {c.errors} | {100 * share:.0f}% |"
        )
    lines.append("")
    lines += [
        f"{'one tagger' if members == 1 else f'an ensemble of {members}'}, in process, {size} "
        f"sentence{'s' if size > 1 else ''} at a time: {rate:,.0f} sentences/s (the ceiling)"
        for members, rates in ceilings.items()
        for size, rate in rates.items()
    ]
    lines += ensemble_costs(cells, ceilings)
    return "\n".join(lines)


def ensemble_costs(cells: list[Cell], ceilings: dict[int, dict[int, float]]) -> list[str]:
    """Each ensemble's sentences a second over one tagger's, in process and served (the
    same workers, request size and clients)."""
    single = {(c.workers, c.sentences_per_request, c.clients): c for c in cells if c.members == 1}
    lines = []
    for members in (m for m in ceilings if m > 1 and 1 in ceilings):
        in_process = ", ".join(
            f"{ceilings[members][size] / ceilings[1][size]:.2f}x ({size} a request)"
            for size in ceilings[members]
        )
        served = ", ".join(
            f"{c.sentences_per_second / one.sentences_per_second:.2f}x ({c.sentences_per_request}"
            f" a request, {c.clients} client{'s' if c.clients > 1 else ''}, {c.workers} worker"
            f"{'s' if c.workers > 1 else ''})"
            for c in cells
            if c.members == members
            and (one := single.get((c.workers, c.sentences_per_request, c.clients)))
        )
        lines.append(
            f"an ensemble of {members} against one tagger, sentences a second: in process "
            f"{in_process}; served {served}"
        )
    return lines
