"""Starts a real zc.zrs node from a zc.zrs configuration file, for the conformance harness.

    python3 zrs_node.py CONFIG [RECONNECT_DELAY]

CONFIG is a ZConfig file with `%import zc.zrs` and one <zrs> section (the harness writes it).
RECONNECT_DELAY (seconds, may be fractional) replaces zc.zrs's 60 s, which its configuration
cannot change. The node speaks the control channel of spec/conformance.md §2: JSON requests
on standard input, one a line; responses and events on standard output, which carries nothing
else (logs go to standard error). Commits, undos and packs go through the zc.zrs Primary,
whose tpc_finish is what wakes zc.zrs's streams. SIGTERM, SIGINT, `shutdown` and the end of
standard input close the storage (a primary lets its secondaries catch up first), then the
node exits with 0; one that cannot start exits with 1 and a traceback. Needs ZODB and zc.zrs.
"""
import base64, json, logging, math, os, queue, re, signal, struct, sys, threading, time

logging.basicConfig(stream=sys.stderr, level=logging.INFO, format='%(asctime)s %(name)s %(levelname)s %(message)s')
# Standard output is the channel's alone: whatever else writes to it (print, or C code on
# fd 1) ends up on standard error.
OUT = os.fdopen(os.dup(1), 'w', encoding='utf-8')
os.dup2(2, 1)
sys.stdout = sys.stderr

import ZODB.config, ZODB.POSException, ZODB.serialize  # noqa: E402
from ZODB.Connection import TransactionMetaData        # noqa: E402
from ZODB.TimeStamp import TimeStamp                   # noqa: E402
from zc.zrs.primary import Primary                     # noqa: E402
from zc.zrs.secondary import Secondary, SecondaryFactory  # noqa: E402

log = logging.getLogger('zrs_node')
out_lock = threading.Lock()  # the main thread answers, the reactor thread sends `committed`


def send(message):
    with out_lock:
        try:
            OUT.write(json.dumps(message, separators=(',', ':')) + '\n')
            OUT.flush()
        except (BrokenPipeError, ValueError):
            pass  # the harness is gone; the end of standard input will stop us


class RequestError(Exception):
    def __init__(self, code, message):
        super().__init__(message)
        self.code = code


def hex_bytes(v, field, length=None):
    if not isinstance(v, str) or not re.fullmatch(r'(?:[0-9a-fA-F]{2})*', v) or length and len(v) != 2 * length:
        raise RequestError('ERR_REQUEST', f'{field} must be {length or "some"} bytes as hex digits')
    return bytes.fromhex(v)


def tid_arg(v, field):
    """A tid: 16 hex digits, or a date as the reference's tidFromString reads it."""
    if isinstance(v, str) and re.fullmatch(r'[0-9a-fA-F]{16}', v):
        return bytes.fromhex(v)
    m = isinstance(v, str) and re.fullmatch(r'(\d{4})-(\d{2})-(\d{2})(?:[ T](\d{2}):(\d{2})(?::(\d{2}(?:\.\d+)?))?)?', v.strip())
    if not m:
        raise RequestError('ERR_REQUEST', f'{field} must be a tid (16 hex digits) or a date')
    y, mo, d, h, mi = (int(x or 0) for x in m.groups()[:5])
    s = float(m.group(6) or 0)
    hi = ((((y - 1900) * 12 + mo - 1) * 31 + d - 1) * 24 + h) * 60 + mi  # months of 31 days
    if not (y >= 1900 and 1 <= mo <= 12 and 1 <= d <= 31 and h < 24 and mi < 60 and s < 60 and hi <= 0xffffffff):
        raise RequestError('ERR_REQUEST', f'{field}: {v!r} is not a date a tid can hold')
    return struct.pack('>II', hi, min(math.floor(s * 2 ** 32 / 60), 0xffffffff))


def ext_value(v):
    """An extension value: JSON (integral numbers are ints, as for the reference), {"$bytes": hex} for bytes."""
    if isinstance(v, float) and v.is_integer():
        return int(v)
    if isinstance(v, list):
        return [ext_value(x) for x in v]
    if isinstance(v, dict) and list(v) == ['$bytes'] and isinstance(v['$bytes'], str):
        return hex_bytes(v['$bytes'], '$bytes')
    return {k: ext_value(x) for k, x in v.items()} if isinstance(v, dict) else v


def meta(req):
    """The TransactionMetaData of a commit or undo: text user and description (UTF-8), extension."""
    for k in ('user', 'description'):
        if not isinstance(req.get(k, ''), str):
            raise RequestError('ERR_REQUEST', f'{k} must be text')
    ext = req.get('extension', {})
    if not isinstance(ext, dict):
        raise RequestError('ERR_REQUEST', 'extension must be an object')
    return TransactionMetaData(req.get('user', ''), req.get('description', ''), ext_value(ext))


def two_phase(primary, txn, write):
    """Runs write() in a ZODB two-phase commit on the Primary; returns the tid once it is durable."""
    try:
        primary.tpc_begin(txn)  # can fail after taking the commit lock (metadata over 65535 bytes)
        write()
        primary.tpc_vote(txn)
        return primary.tpc_finish(txn)  # Primary.tpc_finish: FileStorage's, then wakes the producers
    except BaseException:
        primary.tpc_abort(txn)
        raise


def commit(primary, req):
    if not isinstance(req.get('records'), list) or not all(isinstance(r, dict) for r in req['records']):
        raise RequestError('ERR_REQUEST', 'commit needs records: [{oid, data}]')
    records = [(hex_bytes(r.get('oid'), f'records[{i}].oid', 8), None if r.get('data') is None else hex_bytes(r['data'], f'records[{i}].data'))
               for i, r in enumerate(req['records'])]
    if any(data == b'' for _, data in records):
        raise RequestError('ERR_REQUEST', 'a FileStorage record cannot hold empty data')
    txn = meta(req)

    def write():
        for oid, data in records:
            try:  # the object's current serial, so that ZODB's conflict check lets it through
                serial = primary.history(oid)[0]['tid']
            except ZODB.POSException.POSKeyError:
                serial = b'\0' * 8
            if data is None:  # a revision without data (back pointer 0), as ZODB writes one
                primary.deleteObject(oid, serial, txn)
            else:
                primary.store(oid, serial, data, '', txn)
    return two_phase(primary, txn, write)


def pack(primary, before):
    # FileStorage.pack wants a time, which it turns back into a TimeStamp (keeping tids <= it).
    # A float time is coarser than a tid: take the first time whose TimeStamp is >= the tid.
    t = TimeStamp(before).timeTime()
    while TimeStamp(*time.gmtime(t)[:5] + (t % 60,)).raw() < before:
        t = math.nextafter(t, math.inf)
    primary.pack(t, ZODB.serialize.referencesf)
    return {}


def handle(storage, primary, req):
    op = req.get('op')
    if op == 'last-tid':
        return {'tid': storage.lastTransaction().hex()}
    if op == 'shutdown':
        return {}
    if op not in ('commit', 'undo', 'pack'):
        raise RequestError('ERR_REQUEST', f'unknown op {json.dumps(op)}')
    if isinstance(storage, Secondary):
        raise RequestError('ERR_UNSUPPORTED', f'{op}: a secondary is read-only')
    try:
        if op == 'pack':
            return pack(primary, tid_arg(req.get('before'), 'before'))
        if op == 'commit':
            return {'tid': commit(primary, req).hex()}
        tid, txn = tid_arg(req.get('tid'), 'tid'), meta(req)
        # FileStorage.undo wants the transaction id undoLog gives: the tid in base64
        return {'tid': two_phase(primary, txn, lambda: primary.undo(base64.encodebytes(tid)[:-1], txn)).hex()}
    except ZODB.POSException.ReadOnlyError:  # <filestorage> read-only true
        raise RequestError('ERR_UNSUPPORTED', f'{op}: the storage is read-only')
    except ZODB.POSException.UndoError as e:
        raise RequestError('ERR_UNDO', str(e))


def listen_address(primary):
    """The address the Primary listens on, with its real port; None when it could not listen."""
    done = threading.Event()  # Primary queued cfr_listen on the reactor: once this runs, it has run
    primary._reactor.callFromThread(done.set)
    done.wait(30)
    if primary._listener is None:  # zc.zrs logged CannotListenError and runs on without one
        addr = primary._addr if isinstance(primary._addr, str) else '%s:%s' % primary._addr
        log.error('the primary could not listen on %s; zc.zrs runs on without a listener', addr)
        return None
    if isinstance(primary._addr, str):
        return primary._addr  # a unix socket path
    host = primary._listener.getHost()
    return f'[{host.host}]:{host.port}' if ':' in host.host else f'{host.host}:{host.port}'


def use_delay(seconds):
    """Makes every SecondaryFactory made from now on wait `seconds` before reconnecting."""
    made = SecondaryFactory.__init__

    def __init__(self, reactor, storage, reconnect_delay, *rest):
        made(self, reactor, storage, seconds, *rest)
    SecondaryFactory.__init__ = __init__


def main(argv):
    if len(argv) not in (2, 3):
        sys.stderr.write(__doc__)
        return 2
    stop = []  # non-empty once the node is to stop; a signal handler must take no lock
    signal.signal(signal.SIGTERM, lambda *_: stop.append('SIGTERM'))
    signal.signal(signal.SIGINT, lambda *_: stop.append('SIGINT'))
    if len(argv) == 3:
        # before the storage opens: a Secondary connects as it is made, and a refused first
        # attempt schedules its retry with the delay its factory holds at that moment
        use_delay(float(argv[2]))
    with open(argv[1]) as f:
        storage = ZODB.config.storageFromFile(f)
    # a primary, or a secondary wrapping its file or (chained) a Primary
    primary = next((s for s in (storage, getattr(storage, '_storage', None)) if isinstance(s, Primary)), None)
    send({'event': 'ready', 'role': 'secondary' if isinstance(storage, Secondary) else 'primary',
          'listen': None if primary is None else listen_address(primary),  # (a Primary has __len__)
          'lastTid': storage.lastTransaction().hex()})

    if isinstance(storage, Secondary):
        applied_to = storage._factory.storage  # where zc.zrs commits what it receives
        finish = applied_to.tpc_finish

        def tpc_finish(*args):  # `committed` events, each once the transaction is on disk
            tid = finish(*args)
            send({'event': 'committed', 'tid': tid.hex()})
            return tid
        applied_to.tpc_finish = tpc_finish

    lines = queue.Queue()

    def read_stdin():  # os.read: this daemon thread holds no buffered-reader lock at exit
        rest = b''
        while chunk := os.read(0, 65536):
            *complete, rest = (rest + chunk).split(b'\n')
            for line in complete:
                lines.put(line)
        lines.put(None)  # end of input: answer what was asked, then stop
    threading.Thread(target=read_stdin, daemon=True).start()

    def answer(line):
        try:
            req = json.loads(line.decode('utf-8', 'replace'))
            if not isinstance(req, dict):
                raise ValueError('not an object')
        except ValueError as e:
            return send({'id': None, 'ok': False, 'error': {'code': 'ERR_REQUEST', 'message': f'not a JSON object: {e}'}})
        try:
            if stop:
                raise RequestError('ERR_CLOSED', 'the node is shutting down')
            send({'id': req.get('id'), 'ok': True, **handle(storage, primary, req)})
            if req.get('op') == 'shutdown':
                stop.append('shutdown')
        except Exception as e:  # ZODB's own refusals (too long metadata, ...) keep their name
            code = e.code if isinstance(e, RequestError) else 'ERR_' + type(e).__name__.upper()
            send({'id': req.get('id'), 'ok': False, 'error': {'code': code, 'message': str(e) or repr(e)}})

    while not stop:
        try:
            line = lines.get(timeout=0.05)  # wakes up to see signals
        except queue.Empty:
            continue
        if line is None:
            stop.append('end of input')
        elif line.strip():
            answer(line)
    log.info('stopping (%s)', stop[0])
    storage.close()
    while not lines.empty():  # what came meanwhile gets ERR_CLOSED
        line = lines.get()
        if line and line.strip():
            answer(line)
    return 0


if __name__ == '__main__':
    sys.exit(main(sys.argv))
