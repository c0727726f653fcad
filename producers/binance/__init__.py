"""The Binance Spot market-data producer: live websocket, replay and synthetic sources."""
