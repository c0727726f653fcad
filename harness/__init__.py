"""CLI, settings and wiring that put producers, transports, processors and sinks together."""
