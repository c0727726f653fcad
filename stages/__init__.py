"""The wiring of one processor stage: consume from a transport, process (``processors``), write
to a sink, commit positions; and the ``harness process`` command that runs one."""
