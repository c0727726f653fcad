"""A few plain sentences computed from a run's numbers: what a user can act on.

Which transport had the lower latency at which percentile and by how much; which delivered
everything and which dropped, kept or pushed back; and whether the load was what it claimed:
a producer that missed its target rate means the comparison measured the machine's CPU, not
the transports. Nothing here is canned: every sentence is built from the figures, and a
difference inside the noise is called that instead of crowning a winner.

Used by ``harness run`` / ``demo`` (``pipeline_verdict``), ``harness bench`` (``bench_verdict``)
and ``harness bench compare`` (``compare_verdict``).
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
#: Max sustainable rates closer than this are within the sweep's resolution (bisection steps).
THROUGHPUT_NOISE_RATIO = 1.25
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


def _number(value: Any) -> float | None:
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


def _dropped_note(lost: Mapping[str, int]) -> list[str]:
    """Latency counts only what arrived: a transport that drops looks fast by losing."""
    dropped = [f"{name} dropped {n:,}" for name, n in lost.items() if n > 0]
    if not dropped:
        return []
    return [f"Latency covers delivered messages only ({'; '.join(dropped)})."]


# ------------------------------------------------------------------------------ pipeline


PIPELINE_PERCENTILES = (50.0, 99.0, 99.9)
PRODUCERS = ("binance", "twitter")


def pipeline_verdict(summaries: Sequence[Mapping[str, Any]]) -> list[str]:
    """Sentences for ``harness run`` (one transport) or ``harness demo`` (several)."""
    out: list[str] = []
    if len(summaries) >= 2:
        values = {s["transport"]: _pipeline_quantiles(s.get("latency_ms") or {})
                  for s in summaries}
        counts = {s["transport"]: (s.get("latency_ms") or {}).get("count") for s in summaries}
        sentences = latency_sentences(values, counts, PIPELINE_PERCENTILES)
        if sentences:
            sentences += _dropped_note({s["transport"]: int(s.get("market_lost") or 0)
                                        for s in summaries})
            out.append("Transport hop (publish -> processor receive), per percentile:")
            out += [f"  {line}" for line in sentences]
    out += _pipeline_delivery(summaries)
    return _warnings_first(out + pace_sentences(summaries))


def _warnings_first(lines: list[str]) -> list[str]:
    """A missed target rate undoes every comparison after it: say it first."""
    return [x for x in lines if x.startswith("WARNING")] + \
        [x for x in lines if not x.startswith("WARNING")]


def _pipeline_quantiles(latency: Mapping[str, Any]) -> dict[float, Quantile | None]:
    out: dict[float, Quantile | None] = {}
    for p in PIPELINE_PERCENTILES:
        value = _number(latency.get(f"p{p:g}"))
        ci = (latency.get("ci") or {}).get(f"p{p:g}") or (None, None)
        out[p] = None if value is None else Quantile(value, _number(ci[0]), _number(ci[1]))
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
            target, achieved = _number(pace.get("target_rate")), _number(pace.get("achieved_rate"))
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


# --------------------------------------------------------------------------------- bench


BENCH_PERCENTILES = ((50.0, "e2e_p50"), (99.0, "e2e_p99"), (99.9, "e2e_p99_9"))


def bench_verdict(summary: Sequence[Mapping[str, Any]],
                  max_sustainable: Sequence[Mapping[str, Any]],
                  trials: Sequence[Mapping[str, Any]] = ()) -> list[str]:
    """Sentences over a bench run's summary rows (``results.h5``); ``trials`` (with their
    encoded histograms) give each percentile its confidence interval."""
    histograms = _histograms(trials)
    out = _throughput_sentences(max_sustainable)
    scenarios: dict[str, list[Mapping[str, Any]]] = {}
    for row in summary:
        if row.get("phase") != "sweep":
            scenarios.setdefault(str(row["scenario"]), []).append(row)
    for name, rows in scenarios.items():
        ok = [r for r in rows if r.get("status") == "ok" and int(r.get("e2e_count") or 0) > 0]
        failed = [r for r in rows if r.get("status") != "ok"]
        lines = []
        if len(ok) >= 2:
            values = {str(r["transport"]): bench_quantiles(r, histograms) for r in ok}
            counts = {str(r["transport"]): int(r.get("e2e_count") or 0) for r in ok}
            lines += latency_sentences(values, counts, [p for p, _ in BENCH_PERCENTILES])
            lines += _dropped_note({str(r["transport"]): int(r.get("lost") or 0) for r in ok})
        if ok:
            lines.append(_bench_delivery(ok))
        lines += [f"{r['transport']} did not finish ({r.get('status')}: {r.get('error')})."
                  for r in failed]
        out.append(f"Scenario {name} ({_describe_load(rows[0])}):")
        out += [f"  {line}" for line in lines]
    return _warnings_first(out + bench_pace_sentences(summary))


def _trial_key(row: Mapping[str, Any]) -> tuple[str, str, float, str]:
    return (str(row["scenario"]), str(row["transport"]), float(row.get("target_rate") or 0.0),
            str(row.get("phase")))


def _histograms(trials: Sequence[Mapping[str, Any]]) -> dict[tuple[str, str, float, str], str]:
    return {_trial_key(t): str(t["e2e_histogram"]) for t in trials if t.get("e2e_histogram")}


def bench_quantiles(row: Mapping[str, Any], histograms: Mapping[tuple[str, str, float, str], str]
                    ) -> dict[float, Quantile | None]:
    """A trial's percentiles with confidence intervals from its HdrHistogram (if stored)."""
    encoded = histograms.get(_trial_key(row))
    if encoded:
        from harness.bench.metrics import decode

        hist = decode(encoded)
        if hist.get_total_count():
            return dict(quantiles(
                [p for p, _ in BENCH_PERCENTILES], hist.get_total_count(),
                lambda p: hist.get_value_at_percentile(p) / 1000.0))
    out: dict[float, Quantile | None] = {}
    for p, column in BENCH_PERCENTILES:
        value = _number(row.get(column))
        out[p] = None if value is None else Quantile(value)
    return out


def _describe_load(row: Mapping[str, Any]) -> str:
    rate = _number(row.get("target_rate")) or 0.0
    load = f"{rate:,.0f} msg/s offered" if rate > 0 else "as fast as possible"
    delay = _number(row.get("consumer_delay_us")) or 0.0
    stall = _number(row.get("consumer_stall_ms")) or 0.0
    if delay > 0:
        load = f"overload: {load} to a consumer slowed to {delay:g} us per message"
    if stall > 0:
        load += f", the consumer paused once for {stall:g} ms"
    return load


def _blocks_when_slow(row: Mapping[str, Any]) -> bool | None:
    """True for a transport that pushes back (neither keeps nor drops); None when unknown."""
    if "durable" not in row or "drops_when_slow" not in row:
        return None
    return not row["durable"] and not row["drops_when_slow"]


def _bench_delivery(rows: Sequence[Mapping[str, Any]]) -> str:
    everything, parts = [], []
    for r in rows:
        name = str(r["transport"])
        lost = int(r.get("lost") or 0)
        unconsumed = int(r.get("unconsumed") or 0)
        not_sent = int(r.get("not_sent") or 0)
        duplicates = int(r.get("duplicates") or 0)
        said = []
        if lost:
            said.append(f"dropped {lost:,} (every one counted from sequence gaps)")
        if not_sent:
            if _blocks_when_slow(r) and _slowed(r):
                said.append(f"pushed back on the producer ({not_sent:,} never sent"
                            + (", none dropped)" if not lost else ")"))
            else:
                said.append(f"could not send at the target rate ({not_sent:,} never sent)")
        if unconsumed:
            if r.get("durable"):
                said.append(f"kept everything ({unconsumed:,} still in the broker when the "
                            "consumer stopped)" if not lost else
                            f"kept {unconsumed:,} in the broker when the consumer stopped")
            else:
                said.append(f"discarded {unconsumed:,} still in flight when the consumer "
                            "stopped (no broker keeps them)")
        if duplicates:
            said.append(f"delivered {duplicates:,} twice")
        if said:
            parts.append(f"{name} {'; '.join(said)}")
        else:
            everything.append(name)
    if not parts:
        return "Every transport delivered every message." if len(everything) > 1 else \
            f"{join_names(everything)} delivered every message."
    if everything:
        parts.insert(0, f"{join_names(everything)} delivered every message")
    return "; ".join(parts) + "."


def _throughput_sentences(max_sustainable: Sequence[Mapping[str, Any]]) -> list[str]:
    out = []
    by_scenario: dict[str, list[Mapping[str, Any]]] = {}
    for m in max_sustainable:
        by_scenario.setdefault(str(m["scenario"]), []).append(m)
    for scenario, rows in by_scenario.items():
        ranked = sorted(rows, key=lambda m: -float(m.get("max_rate") or 0))
        best = ranked[0]
        best_rate = float(best.get("max_rate") or 0)
        bound = _number(best.get("latency_bound_ms"))
        head = (f"Max sustainable throughput ({scenario}: p99 <= {bound:g} ms, nothing lost)"
                if bound else f"Max sustainable throughput ({scenario})")
        if best_rate <= 0:
            out.append(f"{head}: no transport sustained even the lowest rate tried.")
            continue

        def shown(m: Mapping[str, Any]) -> str:
            rate = float(m.get("max_rate") or 0)
            text = f"{rate:,.0f} msg/s" if rate > 0 else "none"
            if m.get("limited_by") in ("budget", "max_rate") and rate > 0:
                text = ">= " + text  # the search stopped before a failing rate
            return text

        if len(ranked) == 1:
            out.append(f"{head}: {best['transport']} {shown(best)}.")
            continue
        rest = []
        for m in ranked[1:]:
            rate = float(m.get("max_rate") or 0)
            if rate > 0 and best_rate / rate < THROUGHPUT_NOISE_RATIO:
                rest.append(f"{m['transport']} {shown(m)} (within the search's resolution)")
            elif rate > 0:
                rest.append(f"{m['transport']} {shown(m)} ({best_rate / rate:.1f}x lower)")
            else:
                rest.append(f"{m['transport']} none")
        out.append(f"{head}: {best['transport']} highest at {shown(best)}; {', '.join(rest)}.")
    return out


def _missed_pace(row: Mapping[str, Any]) -> bool:
    if row.get("phase") != "fixed" or row.get("status") != "ok":
        return False
    target = _number(row.get("target_rate")) or 0.0
    if target <= 0:
        return False
    if "kept_pace" in row:
        kept = bool(row["kept_pace"])
    else:  # results written before kept_pace was recorded
        kept = int(row.get("not_sent") or 0) == 0 and \
            (_number(row.get("pub_rate")) or 0.0) >= 0.95 * target
    if kept:
        return False
    return not (_slowed(row) and _blocks_when_slow(row))  # back-pressure: the transport's answer


def _slowed(row: Mapping[str, Any]) -> bool:
    """The scenario makes its consumer slow on purpose (overload, a pause)."""
    return (_number(row.get("consumer_delay_us")) or 0) > 0 or \
        (_number(row.get("consumer_stall_ms")) or 0) > 0


def bench_pace_sentences(summary: Sequence[Mapping[str, Any]], run_label: str = "") -> list[str]:
    fixed = [r for r in summary if r.get("phase") == "fixed" and r.get("status") == "ok"
             and (_number(r.get("target_rate")) or 0) > 0]
    missed = [r for r in fixed if _missed_pace(r)]
    where = f" in {run_label}" if run_label else ""
    out = []
    for r in missed:
        target = float(r["target_rate"])
        sent = _number(r.get("pub_rate")) or 0.0
        cpu = _number(r.get("producer_cpu_mean"))
        out.append(
            f"WARNING{where}: in scenario {r['scenario']}, {r['transport']}'s producer sent "
            f"{sent:,.0f} of its {target:,.0f} msg/s target ({sent / target * 100:.0f} %"
            + (f", producer CPU {cpu:.0f} % of a core" if cpu is not None else "")
            + "): that row measures how fast this machine can publish, not the transport.")
    if fixed and not missed:
        out.insert(0, f"Every producer kept its target rate{where} in the fixed-rate scenarios.")
    return out


# ------------------------------------------------------------------------------- compare


def compare_verdict(a_summary: Sequence[Mapping[str, Any]],
                    b_summary: Sequence[Mapping[str, Any]],
                    a_max: Sequence[Mapping[str, Any]] = (),
                    b_max: Sequence[Mapping[str, Any]] = (),
                    a_trials: Sequence[Mapping[str, Any]] = (),
                    b_trials: Sequence[Mapping[str, Any]] = ()) -> list[str]:
    """What changed from run A to run B, trial by trial; unchanged trials are summed up."""
    out: list[str] = []
    rows_a = {_key(r): r for r in a_summary if r.get("phase") != "sweep"}
    rows_b = {_key(r): r for r in b_summary if r.get("phase") != "sweep"}
    hist_a, hist_b = _histograms(a_trials), _histograms(b_trials)
    unchanged = 0
    for key in [k for k in rows_a if k in rows_b]:
        ra, rb = rows_a[key], rows_b[key]
        if ra.get("status") != "ok" or rb.get("status") != "ok":
            continue
        qa, qb = bench_quantiles(ra, hist_a), bench_quantiles(rb, hist_b)
        changes = []
        for p, _column in BENCH_PERCENTILES:
            va, vb = qa.get(p), qb.get(p)
            if va is None or vb is None or math.isnan(va.value) or math.isnan(vb.value) or not (
                    enough_samples(int(ra.get("e2e_count") or 0), p)
                    and enough_samples(int(rb.get("e2e_count") or 0), p)):
                continue
            if within_noise(va, vb):
                continue
            word = "higher" if vb.value > va.value else "lower"
            ratio = max(va.value, vb.value) / max(min(va.value, vb.value), 1e-9)
            factor = f"{ratio:.0f}x" if ratio >= 10 else f"{ratio:.1f}x" if ratio >= 2 else \
                f"{(ratio - 1) * 100:.0f} %"
            changes.append(f"p{p:g} {word} in B ({fmt_ms(vb.value)} vs {fmt_ms(va.value)} in A, "
                           f"{factor})")
        for column, noun in (("lost", "dropped"), ("not_sent", "never sent")):
            la, lb = int(ra.get(column) or 0), int(rb.get(column) or 0)
            if la != lb:
                changes.append(f"{noun} {la:,} in A, {lb:,} in B")
        scenario, transport, rate = key
        where = f"{scenario} / {transport} @ {f'{rate:,.0f} msg/s' if rate else 'max'}"
        if changes:
            out.append(f"{where}: {'; '.join(changes)}.")
        else:
            unchanged += 1
    only = [k for k in [*rows_a, *rows_b] if (k in rows_a) != (k in rows_b)]
    if unchanged:
        out.append(f"{unchanged} trial(s) of both runs are within noise of each other at p50, "
                   "p99 and p99.9 (less than "
                   f"{(NOISE_RATIO - 1) * 100:.0f} % apart or inside each other's 95 % "
                   "confidence interval) and lost the same.")
    if only:
        out.append(f"{len(only)} trial(s) ran in only one of the two runs.")
    ma = {(m["scenario"], m["transport"]): _number(m.get("max_rate")) for m in a_max}
    mb = {(m["scenario"], m["transport"]): _number(m.get("max_rate")) for m in b_max}
    for key in [k for k in ma if k in mb]:
        va, vb = ma[key] or 0.0, mb[key] or 0.0
        if va and vb and max(va, vb) / min(va, vb) >= THROUGHPUT_NOISE_RATIO:
            out.append(f"Max sustainable throughput of {key[1]} ({key[0]}): {vb:,.0f} msg/s in "
                       f"B vs {va:,.0f} in A ({vb / va:.2f}x).")
    return _warnings_first(
        out + bench_pace_sentences(a_summary, "A") + bench_pace_sentences(b_summary, "B"))


def _key(row: Mapping[str, Any]) -> tuple[str, str, float]:
    return str(row["scenario"]), str(row["transport"]), float(row.get("target_rate") or 0.0)
