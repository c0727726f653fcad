"""The ``depth_1s`` table: one row per symbol per second, the book's top levels and its counters.

The one place the layout is defined (the order-book stage and its readers import it). Top levels
are fixed-size array columns (``float64[10]``, NaN where the book has fewer levels), which HDF5,
PyTables and pandas (one column per level) all read. ``resyncs``, ``gaps`` and ``crossed`` are
running totals for the symbol since the stage started on this file, so the last row says how
healthy the whole run was and a difference between two rows says what happened between them.
"""

from __future__ import annotations

import math

import numpy as np

from processors.order_book import LocalBook, padded_top

#: Levels per side written each second.
DEPTH_LEVELS = 10

DEPTH_1S_DTYPE = np.dtype(
    [
        ("symbol", "S16"),
        ("time_ms", "i8"),  # start of the second (event time of the diffs in it)
        ("last_event_ms", "i8"),  # E of the last diff applied in that second
        ("last_update_id", "i8"),  # the book's update id at the end of the second
        ("synced", "?"),  # False: diffs were missing and no usable snapshot came yet
        ("is_crossed", "?"),  # best bid >= best ask at the end of the second
        ("updates", "i4"),  # diffs applied in the second
        ("bid_levels", "i4"),  # levels the book holds per side (not only the top ones)
        ("ask_levels", "i4"),
        ("bid_px", "f8", (DEPTH_LEVELS,)),  # best first
        ("bid_qty", "f8", (DEPTH_LEVELS,)),
        ("ask_px", "f8", (DEPTH_LEVELS,)),
        ("ask_qty", "f8", (DEPTH_LEVELS,)),
        ("resyncs", "i8"),  # running totals for the symbol
        ("gaps", "i8"),
        ("crossed", "i8"),
    ]
)

_NAN_LEVELS = [math.nan] * DEPTH_LEVELS


def book_row(
    book: LocalBook, second_ms: int, last_event_ms: int, updates: int
) -> tuple[object, ...]:
    """The row for ``book`` as it stands at the end of the second starting at ``second_ms``."""
    c = book.counters
    if book.synced:
        bid_px, bid_qty = padded_top(book.book.top_bids(DEPTH_LEVELS), DEPTH_LEVELS)
        ask_px, ask_qty = padded_top(book.book.top_asks(DEPTH_LEVELS), DEPTH_LEVELS)
        bid_levels, ask_levels = len(book.book.bids), len(book.book.asks)
    else:  # a discarded book shows nothing rather than levels known to be wrong
        bid_px = bid_qty = ask_px = ask_qty = _NAN_LEVELS
        bid_levels = ask_levels = 0
    return (
        book.symbol, second_ms, last_event_ms, book.last_update_id, book.synced, book.is_crossed,
        updates, bid_levels, ask_levels, bid_px, bid_qty, ask_px, ask_qty,
        c.resyncs, c.gaps, c.crossed,
    )  # fmt: skip
