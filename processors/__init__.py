"""Stream processing as pure logic: candles and tickers from trades, sentiment from tweets, order
books from depth streams, event-time windows. No transport, sink or CLI in here."""
