"""A few plain sentences computed from a run's numbers: what a user can act on.

Which transport had the lower latency at which percentile and by how much; which delivered
everything and which dropped, kept or pushed back; and whether the load was what it claimed:
a producer that missed its target rate means the comparison measured the machine's CPU, not
the transports. Nothing here is canned: every sentence is built from the figures, and a
difference inside the noise is called that instead of crowning a winner.

Here: the rules (noise, confidence intervals, sample counts) and the sentences for ``harness
run`` / ``demo`` (``pipeline_verdict``); ``harness.bench.verdict`` applies them to ``harness
bench`` and ``bench compare``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

#: Two latencies closer than this ratio are within noise: on a shared 2-core machine the same
#: run repeated moves percentiles by 10-50 % (README, "Benchmarks"), so smaller gaps decide
#: nothing.
NOISE_RATIO = 1.5
#: Below this absolute gap (ms), differences are scheduler and timer jitter whatever the ratio.
NOISE_FLOOR_MS = 0.05
#: A percentile is only discussed when at least this many samples lie at or beyond it (p99.9
#: of 2,000 samples rests on 2 values: that is an anecdote, not a percentile).
MIN_TAIL_SAMPLES = 10
#: z for the 95 % confidence interval of a percentile estimated from n samples.
Z_95 = 1.96


@dataclass(frozen=True, slots=True)
class Quantile:
    """A latency percentile (ms) and, when the samples are at hand, its 95 % confidence
    interval: the sampling noise of this run, on top of the run-to-run noise of NOISE_RATIO."""

    value: float
    lo: float | None = None
    hi: float | None = None

    def overlaps(self, other: Quantile) -> bool:
        if None in (self.lo, self.hi, other.lo, other.hi):
            return False
        return bool(self.lo <= other.hi and other.lo <= self.hi)  # type: ignore[operator]


def percentile_interval(percentile: float, count: int, z: float = Z_95) -> tuple[float, float]:
    """The percentiles whose values bound ``percentile``'s 95 % confidence interval.

    The sample p-quantile's rank is binomial(n, p): its order statistics within
    n*p +- z*sqrt(n*p*(1-p)) bracket the true quantile.
    """
    p = percentile / 100
    half = z * math.sqrt(p * (1 - p) / max(count, 1))
    return max(p - half, 0.0) * 100, min(p + half, 1.0) * 100


def quantiles(percentiles: Iterable[float], count: int,
              value_at: Callable[[float], float]) -> dict[float, Quantile]:
    """Each percentile with its confidence interval, from ``value_at(percentile)`` in ms."""
    out = {}
    for p in percentiles:
        lo, hi = percentile_interval(p, count)
        out[p] = Quantile(value_at(p), value_at(lo), value_at(hi))
    return out


# ------------------------------------------------------------------------------ numbers


def within_noise(a: float | Quantile, b: float | Quantile, ratio: float = NOISE_RATIO,
                 floor: float = NOISE_FLOOR_MS) -> bool:
    """Too close to call: under ``ratio`` apart, under ``floor`` ms apart, or overlapping
    confidence intervals."""
    qa = a if isinstance(a, Quantile) else Quantile(float(a))
    qb = b if isinstance(b, Quantile) else Quantile(float(b))
    lo, hi = sorted((qa.value, qb.value))
    return hi - lo < floor or (lo > 0 and hi / lo < ratio) or qa.overlaps(qb)


def how_much_lower(lo: float, hi: float) -> str:
    """``63x lower`` for large gaps, ``38 % lower`` for small ones."""
    if lo <= 0:
        return f"{hi - lo:.2f} ms lower"
    r = hi / lo
    if r >= 10:
        return f"{r:.0f}x lower"
    if r >= 2:
        return f"{r:.1f}x lower"
    return f"{(1 - lo / hi) * 100:.0f} % lower"


def fmt_ms(value: float) -> str:
    v = float(value)
    if v < 1:
        return f"{v:.2f} ms"
    if v < 100:
        return f"{v:.1f} ms"
    return f"{v:,.0f} ms"


def fmt_rate(value: float) -> str:
    return f"{value:,.0f}" if value >= 10 else f"{value:.1f}"


def join_names(names: Sequence[str]) -> str:
    if len(names) <= 1:
        return "".join(names)
    return ", ".join(names[:-1]) + " and " + names[-1]


def enough_samples(count: int | None, percentile: float) -> bool:
    """Whether ``count`` samples support a percentile (None: count unknown, trust it)."""
    if count is None:
        return True
    return count * (1 - percentile / 100) >= MIN_TAIL_SAMPLES


def as_number(value: Any) -> float | None:
    try:
        v = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(v) else v


# ------------------------------------------------------------------------------ latency


def latency_sentences(
    values: Mapping[str, Mapping[float, Quantile | None]],
    counts: Mapping[str, int | None],
    percentiles: Iterable[float],
) -> list[str]:
    """Per percentile: who was lowest and by how much, or that the gap is within noise.

    ``values[name][percentile]`` in ms; ``counts[name]`` the samples behind them.
    """
    out = []
    for p in percentiles:
        have: dict[str, Quantile] = {}
        for name, v in values.items():
            q = v.get(p)
            if q is not None and not math.isnan(q.value) and enough_samples(counts.get(name), p):
                have[name] = q
        label = f"p{p:g}"
        if len(have) < 2:
            if len(values) >= 2:
                out.append(f"At {label}, too few samples to compare (fewer than "
                           f"{MIN_TAIL_SAMPLES} beyond it).")
            continue
        best = min(have, key=lambda n: have[n].value)
        low = have[best].value
        others = [n for n in have if n != best]
        beaten = [n for n in others if not within_noise(have[best], have[n])]
        tied = [n for n in others if n not in beaten]
        if not beaten:
            shown = ", ".join(f"{n} {fmt_ms(have[n].value)}" for n in have)
            out.append(f"At {label}, the difference is within noise ({shown}).")
            continue
        lowest = "lower" if len(have) == 2 else "lowest"
        vs = ", ".join(f"{fmt_ms(have[n].value)} on {n} "
                       f"({how_much_lower(low, have[n].value)})" for n in beaten)
        sentence = f"At {label}, {best} had the {lowest} latency: {fmt_ms(low)} vs {vs}"
        if tied:
            sentence += (f"; {join_names([f'{n} ({fmt_ms(have[n].value)})' for n in tied])} "
                         "within noise of it")
        out.append(sentence + ".")
    return out


def dropped_note(lost: Mapping[str, int]) -> list[str]:
    """Latency counts only what arrived: a transport that drops looks fast by losing."""
    dropped = [f"{name} dropped {n:,}" for name, n in lost.items() if n > 0]
    if not dropped:
        return []
    return [f"Latency covers delivered messages only ({'; '.join(dropped)})."]


# ------------------------------------------------------------------------------ pipeline


PIPELINE_PERCENTILES = (50.0, 99.0, 99.9)


def pipeline_verdict(summaries: Sequence[Mapping[str, Any]]) -> list[str]:
    """Sentences for ``harness run`` (one transport) or ``harness demo`` (several)."""
    out: list[str] = []
    if len(summaries) >= 2:
        values = {s["transport"]: _pipeline_quantiles(s.get("latency_ms") or {})
                  for s in summaries}
        counts = {s["transport"]: (s.get("latency_ms") or {}).get("count") for s in summaries}
        sentences = latency_sentences(values, counts, PIPELINE_PERCENTILES)
        if sentences:
            sentences += dropped_note({s["transport"]: int(s.get("market_lost") or 0)
                                        for s in summaries})
            out.append("Transport hop (publish -> processor receive), per percentile:")
            out += [f"  {line}" for line in sentences]
    out += _pipeline_delivery(summaries)
    return warnings_first(out + pace_sentences(summaries))


def warnings_first(lines: list[str]) -> list[str]:
    """A missed target rate undoes every comparison after it: say it first."""
    return [x for x in lines if x.startswith("WARNING")] + \
        [x for x in lines if not x.startswith("WARNING")]


def _pipeline_quantiles(latency: Mapping[str, Any]) -> dict[float, Quantile | None]:
    out: dict[float, Quantile | None] = {}
    for p in PIPELINE_PERCENTILES:
        value = as_number(latency.get(f"p{p:g}"))
        ci = (latency.get("ci") or {}).get(f"p{p:g}") or (None, None)
        out[p] = None if value is None else Quantile(value, as_number(ci[0]), as_number(ci[1]))
    return out


def _pipeline_delivery(summaries: Sequence[Mapping[str, Any]]) -> list[str]:
    clean, notes = [], []
    for s in summaries:
        name = s["transport"]
        parts = []
        for stream, noun in (("market", "market messages"), ("tweets", "tweets")):
            published = int(s.get(f"{stream}_published") or 0)
            lost = s.get(f"{stream}_lost")
            duplicates = int(s.get(f"{stream}_duplicates") or 0)
            if lost is None:
                if published or stream == "market":
                    parts.append(f"its {noun} processor reported nothing (stage failed?), so "
                                 "their loss is unknown")
                continue
            if lost > 0:
                parts.append(f"lost {lost:,} of {published:,} {noun} (counted from sequence "
                             "gaps)")
            elif lost < 0:
                parts.append(f"received {-lost:,} more {noun} than were published")
            if duplicates:
                parts.append(f"received {duplicates:,} {noun} twice")
        if parts:
            notes.append(f"{name} {'; '.join(parts)}.")
        else:
            clean.append(name)
    out = []
    if clean:
        who = "Every transport" if not notes and len(clean) > 1 else join_names(clean)
        out.append(f"{who} delivered every published message exactly once (none lost, none "
                   "duplicated).")
    return out + notes


def pace_sentences(summaries: Sequence[Mapping[str, Any]]) -> list[str]:
    """Whether every producer kept its target rate; a warning per producer that did not."""
    warnings, kept, unpaced = [], [], []
    for s in summaries:
        for producer, pace in (s.get("pace") or {}).items():
            target = as_number(pace.get("target_rate"))
            achieved = as_number(pace.get("achieved_rate"))
            if pace.get("on_pace") is False and target and achieved is not None:
                warnings.append(
                    f"WARNING: on {s['transport']}, the {producer} producer reached "
                    f"{fmt_rate(achieved)} of its {fmt_rate(target)} msg/s target "
                    f"({achieved / target * 100:.0f} %, "
                    f"{float(pace.get('lag_s') or 0):.1f} s behind schedule at the end). "
                    "The load was not what was asked, so this comparison measures the machine's "
                    "CPU, not the transports: rerun on a quieter machine or at a lower rate.")
            elif pace.get("on_pace") is True and target:
                kept.append(f"{producer} on {s['transport']} {fmt_rate(target)} msg/s")
            elif target is None and achieved:
                unpaced.append(f"{producer} on {s['transport']} {fmt_rate(achieved)} msg/s")
    out = []
    if kept and not warnings:
        out.append(f"Every producer kept its target rate ({'; '.join(kept)}).")
    elif kept:
        out.append(f"On target: {'; '.join(kept)}.")
    if unpaced:
        out.append(f"Unpaced producers (no target rate, as fast as they could): "
                   f"{'; '.join(unpaced)}; compare their rates, not their latency.")
    return out + warnings
