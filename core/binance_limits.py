"""What a value in a Binance event may be, shared by the producer's check and the processor's.

Both edges check the same rules because both can be reached by a hostile sender (the producer
reads the exchange or a recording; the processor reads a topic anyone may write to), and a value
that passes must fit where it ends up: HDF5 ``int64`` columns, ``float64`` sums and the
24-byte symbol column. Nothing is cut or clamped: a value that does not fit is refused.

- integers (ids, counts, times): ``0 <= n < 2**63``; times in ms also ``<= MAX_TIME_MS`` so
  ``ms * 1_000_000`` (the envelope's event time in ns) stays an int64;
- decimals: plain ``digits[.digits]`` strings as Binance sends them (no sign, exponent,
  underscore, blank, ``NaN`` or ``inf``), at most ``DECIMAL_INT_DIGITS`` digits before the
  point, so every product and day-long sum stays far from float64's overflow;
- symbols: 1..24 UTF-8 bytes of letters, digits and ``_`` (Binance lists symbols such as
  ``币安人生USDT``; a NUL, a blank or a control character is never part of one).
"""

from __future__ import annotations

import re

INT64_MAX = 2**63 - 1
#: The largest ms time whose ns value fits an int64 (year 2262).
MAX_TIME_MS = INT64_MAX // 1_000_000
#: A symbol is stored in an ``S24`` column: longer ones would be cut and two could merge.
SYMBOL_MAX_BYTES = 24
#: Digits before the decimal point; the largest daily volume on Binance has ~15.
DECIMAL_INT_DIGITS = 18

_DECIMAL = rf"[0-9]{{1,{DECIMAL_INT_DIGITS}}}(?:\.[0-9]{{1,30}})?"
POSITIVE_DECIMAL = re.compile(_DECIMAL).fullmatch
SIGNED_DECIMAL = re.compile(rf"-?{_DECIMAL}").fullmatch
_ALL_DECIMALS = re.compile(rf"(?:{_DECIMAL}\n)*{_DECIMAL}").fullmatch


def all_positive_decimals(texts: list[str]) -> bool:
    """``POSITIVE_DECIMAL`` of every text, in one regex call over them joined by newlines (a
    newline is no decimal character, so the join cannot make a bad text pass)."""
    joined = "\n".join(texts)
    return joined.count("\n") == len(texts) - 1 and _ALL_DECIMALS(joined) is not None


def symbol_problem(symbol: object) -> str | None:
    """Why ``symbol`` cannot be a Binance symbol, or None if it can."""
    if type(symbol) is not str:
        return f"symbol must be a string, got {type(symbol).__name__}"
    if not symbol:
        return "symbol is empty"
    if not symbol.replace("_", "").isalnum():
        return f"symbol {symbol[:40]!r} holds characters other than letters, digits and '_'"
    if len(symbol.encode()) > SYMBOL_MAX_BYTES:
        return f"symbol {symbol[:40]!r} is longer than {SYMBOL_MAX_BYTES} bytes"
    return None


class SymbolCheck:
    """``symbol_problem`` with a bounded memory of symbols already found good (a hot path).

    A stream carries a handful of symbols; a hostile one carrying ever-new names only refills
    the cache, never grows it past ``capacity``.
    """

    __slots__ = ("capacity", "good")

    def __init__(self, capacity: int = 4096) -> None:
        self.capacity = capacity
        self.good: set[str] = set()

    def problem(self, symbol: object) -> str | None:
        if type(symbol) is str and symbol in self.good:
            return None
        problem = symbol_problem(symbol)
        if problem is None:
            if len(self.good) >= self.capacity:
                self.good.clear()
            self.good.add(symbol)  # type: ignore[arg-type]
        return problem
