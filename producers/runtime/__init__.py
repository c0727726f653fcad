"""The one producer runtime every source runs on.

A source (``producers/<name>/``) brings what only it knows: the schema that turns one raw frame
into messages (``Decoder``), a live client, a synthetic generator and a ``Source`` declaration
(its topics and settings). The runtime brings everything else, the same for every source: the
``harness produce <name>`` command and its common settings, replay and recording, pacing, the
loop that validates, envelopes and publishes (``producer.Producer.handle``), dead letters,
SIGTERM/SIGINT, the end-of-stream announcement, progress, heartbeat and the JSON summary.
"""
