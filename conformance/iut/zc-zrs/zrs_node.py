"""Starts a real zc.zrs node from a zc.zrs configuration file, for the conformance harness.

    python3 zrs_node.py CONFIG [RECONNECT_DELAY]

CONFIG is a ZConfig file with `%import zc.zrs` and one <zrs> section (the harness writes
it). The optional RECONNECT_DELAY (seconds, may be fractional) replaces zc.zrs's default of
60 s, which its configuration cannot change. The node runs until SIGTERM or SIGINT, then
closes the storage (for a primary: catch up and close every connection).

Needs ZODB and zc.zrs installed in the Python that runs it.
"""
import signal
import sys
import threading

import ZODB.config


def secondaries(storage):
    """The zc.zrs Secondary objects in a wrapped storage."""
    while storage is not None:
        if hasattr(storage, '_factory') and hasattr(storage._factory, 'reconnect_delay'):
            yield storage
        storage = getattr(storage, '_storage', None)


def main(argv):
    if len(argv) not in (2, 3):
        sys.stderr.write(__doc__)
        return 2
    with open(argv[1]) as f:
        storage = ZODB.config.storageFromFile(f)
    if len(argv) == 3:
        for s in secondaries(storage):
            s._factory.reconnect_delay = float(argv[2])
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    stop.wait()
    storage.close()
    return 0


if __name__ == '__main__':
    sys.exit(main(sys.argv))
