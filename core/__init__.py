"""The bottom layer every package may use: user errors, dead letters, settings, liveness, the
recording format and the value rules of Binance events. It imports no other package of ours."""
