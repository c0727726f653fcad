"""End-to-end load harness behind ``harness bench``: workloads, open-loop workers, results.

Producers and consumers run as separate processes speaking only the ``transports`` interface,
so every backend is measured through the same code path; results travel back as JSON lines.
"""
