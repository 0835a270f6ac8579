"""Python's cyclic garbage collector, set for a server process.

By default it collects its youngest generation every 700 net allocations of container objects
(dicts, lists, ...). A request crosses that count several times over while it builds a
response: a worklist's Bundle is hundreds of dicts, nearly all freed by reference counting as
soon as the response is sent, yet each collection meanwhile traverses them. And every full
collection traverses every object alive, most of them made at startup and kept for the
process's life (the FHIR models, the search parameters, compiled statements): about 200,000
in a server, a pause of 0.1 s with the interpreter's lock held, about once in a thousand
worklists. Measured in docs/performance.md ("Garbage collection").
"""

from __future__ import annotations

import gc

# Net allocations between two collections of the youngest generation: above what one request
# holds at once, so that a request's garbage is freed by reference counting alone.
YOUNG_THRESHOLD = 10_000


def settle() -> None:
    """Once the server is started: what exists then is never collected (moved to the
    permanent generation), and the youngest generation is collected less often."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(YOUNG_THRESHOLD, *gc.get_threshold()[1:])
