"""Imported last by the workers' fork server (:data:`trajgym.rollout.workers.PRELOAD`), never by a
job's process: it gets the server ready to fork workers that start playing at once.

- It imports the built-in domains. A worker unpickles its units, and a unit's scenario imports
  its domain's modules: 50 ms (customer support) to 120 ms (workflow) per worker, before its first
  episode, while the job's process had its share of the slots playing.
- It collects, then freezes what the server holds (:func:`gc.freeze`). A worker starts its job
  with a full collection (:func:`trajgym.rollout.runtime.collector_tuned`), which walked every object
  it inherited: 20 ms; frozen, they are skipped.
"""

from __future__ import annotations

import contextlib
import gc

from trajgym.world.registry import DOMAINS, get_domain

for _name in DOMAINS:
    with contextlib.suppress(Exception):  # a worker that needs it imports it, and meets the error there
        get_domain(_name)
gc.collect()
gc.freeze()
