"""``harness chaos``: fault experiments on the real pipeline, accounted from sequence numbers.

Each scenario runs the real stage commands as subprocesses (``harness produce binance`` with a
seeded synthetic trade stream, ``harness process candles``) over Kafka and ZeroMQ, injects one
fault (kill -9, SIGSTOP, producer restart, broker restart, full disk, unwritable folder) and then
compares what the producers sent (their ids and message counts) with the HDF5 file's ``trades``
and ``gaps`` tables: delivered, lost, duplicated, reordered, what the pipeline itself reported as
lost, and how long the processor took to get past the fault.
"""
