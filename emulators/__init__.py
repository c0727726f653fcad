"""Local emulators of external APIs (Binance websocket, Twitter v2) for tests and offline use."""
