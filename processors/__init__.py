"""Stream processors: candles from trades, sentiment from tweets."""
