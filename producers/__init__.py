"""Sources: Binance websocket and Twitter/X, each live, recorded, replayed or synthetic."""
