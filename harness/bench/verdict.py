"""The verdict of ``harness bench`` and ``bench compare``: sentences from results.h5 figures.

Per fixed-rate scenario, who had the lower end-to-end latency at p50/p99/p99.9 (confidence
intervals from each trial's HdrHistogram); under overload, who kept everything, who dropped and
who pushed back on the producer (from the transport's declared capabilities); the max
sustainable throughput ranking; and a warning for any trial whose producer missed its target
rate. The noise rules are ``harness.verdict``'s.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from harness.verdict import (
    NOISE_RATIO,
    Quantile,
    as_number,
    dropped_note,
    enough_samples,
    fmt_ms,
    join_names,
    latency_sentences,
    quantiles,
    warnings_first,
    within_noise,
)

#: Max sustainable rates closer than this are within the sweep's resolution (bisection steps).
THROUGHPUT_NOISE_RATIO = 1.25

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
            lines += dropped_note({str(r["transport"]): int(r.get("lost") or 0) for r in ok})
        if ok:
            lines.append(_bench_delivery(ok))
        lines += [f"{r['transport']} did not finish ({r.get('status')}: {r.get('error')})."
                  for r in failed]
        out.append(f"Scenario {name} ({_describe_load(rows[0])}):")
        out += [f"  {line}" for line in lines]
    return warnings_first(out + bench_pace_sentences(summary))


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
        value = as_number(row.get(column))
        out[p] = None if value is None else Quantile(value)
    return out


def _describe_load(row: Mapping[str, Any]) -> str:
    rate = as_number(row.get("target_rate")) or 0.0
    load = f"{rate:,.0f} msg/s offered" if rate > 0 else "as fast as possible"
    delay = as_number(row.get("consumer_delay_us")) or 0.0
    stall = as_number(row.get("consumer_stall_ms")) or 0.0
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
        bound = as_number(best.get("latency_bound_ms"))
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
    target = as_number(row.get("target_rate")) or 0.0
    if target <= 0:
        return False
    if "kept_pace" in row:
        kept = bool(row["kept_pace"])
    else:  # results written before kept_pace was recorded
        kept = int(row.get("not_sent") or 0) == 0 and \
            (as_number(row.get("pub_rate")) or 0.0) >= 0.95 * target
    if kept:
        return False
    return not (_slowed(row) and _blocks_when_slow(row))  # back-pressure: the transport's answer


def _slowed(row: Mapping[str, Any]) -> bool:
    """The scenario makes its consumer slow on purpose (overload, a pause)."""
    return (as_number(row.get("consumer_delay_us")) or 0) > 0 or \
        (as_number(row.get("consumer_stall_ms")) or 0) > 0


def bench_pace_sentences(summary: Sequence[Mapping[str, Any]], run_label: str = "") -> list[str]:
    fixed = [r for r in summary if r.get("phase") == "fixed" and r.get("status") == "ok"
             and (as_number(r.get("target_rate")) or 0) > 0]
    missed = [r for r in fixed if _missed_pace(r)]
    where = f" in {run_label}" if run_label else ""
    out = []
    for r in missed:
        target = float(r["target_rate"])
        sent = as_number(r.get("pub_rate")) or 0.0
        cpu = as_number(r.get("producer_cpu_mean"))
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
    ma = {(m["scenario"], m["transport"]): as_number(m.get("max_rate")) for m in a_max}
    mb = {(m["scenario"], m["transport"]): as_number(m.get("max_rate")) for m in b_max}
    for key in [k for k in ma if k in mb]:
        va, vb = ma[key] or 0.0, mb[key] or 0.0
        if va and vb and max(va, vb) / min(va, vb) >= THROUGHPUT_NOISE_RATIO:
            out.append(f"Max sustainable throughput of {key[1]} ({key[0]}): {vb:,.0f} msg/s in "
                       f"B vs {va:,.0f} in A ({vb / va:.2f}x).")
    return warnings_first(
        out + bench_pace_sentences(a_summary, "A") + bench_pace_sentences(b_summary, "B"))


def _key(row: Mapping[str, Any]) -> tuple[str, str, float]:
    return str(row["scenario"]), str(row["transport"]), float(row.get("target_rate") or 0.0)
