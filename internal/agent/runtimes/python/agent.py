"""Catalyzer Python agent: speaks the control protocol (docs/PROTOCOL.md) on
the fd named by CATALYZER_CONTROL_FD (default 3), loads the handler named in
init and calls it once per invoke.

It never writes to stdout or stderr itself: diagnostics go to the daemon as
error or log frames. It exits 0 on EOF of the control channel and 2 on a
protocol violation by the daemon (after sending an error frame that says why).
"""

import json
import os
import random
import struct
import sys
import tempfile  # imported here, in the template, not on the fork path
import time
import traceback

PROTOCOL_VERSION = 1
MAX_FRAME = 8 << 20
MAX_LOG_FRAME = 64 << 10  # the daemon refuses a longer log frame
MAGIC = b"CZ"
T_INIT, T_READY, T_INVOKE, T_RESULT, T_ERROR, T_LOG, T_FORKED = 1, 2, 3, 4, 5, 6, 7
DEFAULT_OUTPUT_LIMIT = 64 << 10
# Rounds of Agent.warm: 3.11 specialises a function's bytecode after 8
# calls; 16 measured ~120 KiB fewer private pages per idle clone than none.
WARM_ROUNDS = 16


class ProtocolError(Exception):
    pass


class Channel:
    def __init__(self, fd):
        self.fd = fd

    def _read_exact(self, n, at_start):
        chunks, got = [], 0
        while got < n:
            b = os.read(self.fd, min(n - got, 1 << 20))
            if not b:
                if at_start and got == 0:
                    return None
                raise ProtocolError("control channel closed inside a frame")
            chunks.append(b)
            got += len(b)
        return b"".join(chunks)

    def read(self):
        """Returns (type, payload dict) or None on a clean EOF."""
        h = self._read_exact(8, True)
        if h is None:
            return None
        n = check_header(h)[1]
        return h[3], parse_payload(self._read_exact(n, False) if n else b"")

    def write_raw(self, typ, payload):
        view = memoryview(frame(typ, payload))
        while view:
            n = os.write(self.fd, view)
            view = view[n:]

    def write(self, typ, msg):
        self.write_raw(typ, json.dumps(msg).encode())


def frame(typ, payload):
    return MAGIC + struct.pack(">BBI", PROTOCOL_VERSION, typ, len(payload)) + payload


def check_header(h):
    """Returns (type, payload length) of the 8-byte header h."""
    if h[:2] != MAGIC:
        raise ProtocolError("bad frame magic %r" % h[:2])
    version, typ, n = h[2], h[3], struct.unpack(">I", h[4:8])[0]
    if version != PROTOCOL_VERSION:
        raise ProtocolError("daemon sent protocol version %d, agent speaks version %d" % (version, PROTOCOL_VERSION))
    if n > MAX_FRAME:
        raise ProtocolError("frame of %d bytes exceeds the limit of %d" % (n, MAX_FRAME))
    return typ, n


def parse_payload(payload):
    try:
        msg = json.loads(payload)
    except ValueError as e:
        raise ProtocolError("frame payload is not JSON: %s" % e)
    if not isinstance(msg, dict):
        raise ProtocolError("frame payload is not a JSON object")
    return msg


def error_msg(exc, **extra):
    msg = {
        "type": type(exc).__name__,
        "message": str(exc),
        "trace": "".join(traceback.format_exception(type(exc), exc, exc.__traceback__)),
    }
    msg.update(extra)
    return msg


class Context:
    """The handler's second argument."""

    def __init__(self, agent, invocation_id, deadline_ns):
        self._agent = agent
        self.function_name = agent.function
        self.invocation_id = invocation_id
        self.aws_request_id = invocation_id
        self._deadline_ns = deadline_ns

    def get_remaining_time_in_millis(self):
        if self._deadline_ns is None:
            return 0
        return max(0, (self._deadline_ns - time.monotonic_ns()) // 1_000_000)

    def log(self, message):
        """Sends message to the daemon as a log frame right away, cut to
        fit MAX_LOG_FRAME."""
        message = str(message)
        while True:
            payload = json.dumps({"id": self.invocation_id, "message": message}).encode()
            if len(payload) <= MAX_LOG_FRAME:
                break
            message = message[:max(0, len(message) * MAX_LOG_FRAME // len(payload) - 64)]
        self._agent.chan.write_raw(T_LOG, payload)


class Capture:
    """Per-invocation capture of fds 1 and 2 into memfds (so print(),
    os.write(1, ...) and C extensions are all caught)."""

    def __init__(self):
        # The saved fds and the memfds are made per invocation and closed
        # after it: between invocations the agent holds no memfd and no
        # copy of its stdout, which a frozen template's forks would share
        # (each would write into the template's stdout).
        self.saved = []
        self.files = []

    @staticmethod
    def _memfd(name):
        try:
            return os.memfd_create("catalyzer-" + name, os.MFD_CLOEXEC)
        except (AttributeError, OSError):
            import tempfile
            f = tempfile.TemporaryFile()
            return os.dup(f.fileno())

    @staticmethod
    def _flush():
        for s in (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__):
            try:
                if s is not None:
                    s.flush()
            except Exception:
                pass

    def start(self):
        self._flush()
        self.saved = [os.dup(1), os.dup(2)]  # non-inheritable, as os.dup makes them
        self.files = [self._memfd("stdout"), self._memfd("stderr")]
        for target, f in zip((1, 2), self.files):
            os.dup2(f, target)

    def stop(self, limit):
        self._flush()
        for target, saved in zip((1, 2), self.saved):
            os.dup2(saved, target)
            os.close(saved)
        self.saved = []
        out, truncated = [], False
        for f in self.files:
            size = os.fstat(f).st_size
            data = os.pread(f, min(size, limit), 0) if size else b""
            truncated = truncated or size > limit
            out.append(data.decode("utf-8", "replace"))
            os.close(f)
        self.files = []
        return out[0], out[1], truncated


class Agent:
    def __init__(self, chan):
        self.chan = chan
        self.function = ""
        self.handler = None
        self.limit = DEFAULT_OUTPUT_LIMIT
        self.capture = None

    def load(self, m):
        """Handles init; returns the ready or error message and its type."""
        if m.get("version") != PROTOCOL_VERSION:
            raise ProtocolError("init for protocol version %r, agent speaks version %d" % (m.get("version"), PROTOCOL_VERSION))
        self.function = str(m.get("function", ""))
        limit = m.get("output_limit") or DEFAULT_OUTPUT_LIMIT
        self.limit = max(0, int(limit))
        code_dir = m.get("code_dir") or "."
        spec = str(m.get("handler", ""))
        try:
            mod_name, sep, attr = spec.rpartition(".")
            if not sep or not mod_name or not attr:
                raise ValueError("handler %r is not of the form module.function" % spec)
            mod_name = mod_name.replace("/", ".")
            if code_dir not in sys.path:
                sys.path.insert(0, code_dir)
            try:
                os.chdir(code_dir)
            except OSError:
                pass
            import importlib
            self.capture = Capture()
            self.capture.start()
            try:
                module = importlib.import_module(mod_name)
            finally:
                # Output printed at import time is not kept.
                self.capture.stop(0)
            if not hasattr(module, attr):
                raise AttributeError("module %r has no attribute %r" % (mod_name, attr))
            fn = getattr(module, attr)
            if not callable(fn):
                raise TypeError("%s.%s is not callable" % (mod_name, attr))
            self.handler = fn
        except BaseException as e:  # noqa: B036 - report everything, even SystemExit
            return T_ERROR, error_msg(e)
        openssl_rand()
        if m.get("template"):
            self.warm()
        return T_READY, {"version": PROTOCOL_VERSION, "pid": os.getpid(), "ready_ns": time.monotonic_ns()}

    def invoke(self, m):
        self.chan.write_raw(*self.result(m, self.handler))

    def result(self, m, handler):
        """Runs handler for the invoke message m; returns the reply frame's
        type and payload."""
        inv_id = str(m.get("id", ""))
        deadline_ms = m.get("deadline_ms") or 0
        deadline = time.monotonic_ns() + int(deadline_ms) * 1_000_000 if deadline_ms > 0 else None
        ctx = Context(self, inv_id, deadline)
        event = m.get("event")
        self.capture.start()
        entry = time.monotonic_ns()
        exc = None
        try:
            ret = handler(event, ctx)
        except BaseException as e:  # noqa: B036
            exc = e
        exit_ns = time.monotonic_ns()
        stdout, stderr, truncated = self.capture.stop(self.limit)
        meta = {"id": inv_id, "entry_ns": entry, "exit_ns": exit_ns,
                "stdout": stdout, "stderr": stderr, "truncated": truncated}
        if exc is None:
            try:
                output = json.dumps(ret, allow_nan=False)
            except (TypeError, ValueError, RecursionError) as e:
                exc = SerializationError("handler result is not JSON-serialisable: %s" % e)
                exc.__traceback__ = e.__traceback__
        if exc is not None:
            return T_ERROR, error_payload(error_msg(exc, **meta))
        payload = (json.dumps(meta)[:-1] + ', "output": ' + output + "}").encode()
        if len(payload) > MAX_FRAME:
            return T_ERROR, error_payload(dict(meta, type="ResultTooLarge",
                                               message="result frame of %d bytes exceeds the limit of %d" % (len(payload), MAX_FRAME)))
        return T_RESULT, payload

    def warm(self):
        """Runs, in a template about to be frozen, the agent's own fork
        and invoke path (frame parsing, reseed, capture, a result frame)
        with a stand-in handler, its frames discarded: the code objects it
        runs are specialised and the objects it allocates once made here,
        so that each clone does not write its own copy of those pages
        (docs/ARCHITECTURE.md, "Fork density"). No tenant code runs; what
        the stand-in prints goes to a capture that is dropped."""
        req = json.dumps({"id": "warm", "event": {"name": "warm"}, "deadline_ms": 1000}).encode()
        for _ in range(WARM_ROUNDS):
            frame(T_READY, json.dumps(self.forked()).encode())
            h = frame(T_INVOKE, req)
            check_header(h[:8])
            frame(*self.result(parse_payload(h[8:]), warm_handler))

    def forked(self):
        """This process is a clone of a template: reseed the RNGs a clone
        would otherwise share with its siblings."""
        random.seed(os.urandom(32))
        ssl = openssl_rand()
        if ssl is not None:
            ssl.RAND_add(os.urandom(32), 32.0)
        tempfile._name_sequence = None  # its Random is keyed on the pid, which clones share
        np = sys.modules.get("numpy")
        if np is not None:
            try:
                np.random.seed()  # legacy global RandomState, from OS entropy
            except Exception:
                pass
        return {"version": PROTOCOL_VERSION, "pid": os.getpid(), "ready_ns": time.monotonic_ns()}

    def serve(self):
        while True:
            msg = self.chan.read()
            if msg is None:
                return 0
            typ, m = msg
            if typ == T_INIT:
                if self.handler is not None:
                    raise ProtocolError("second init")
                t, reply = self.load(m)
                self.chan.write(t, reply)
            elif typ == T_INVOKE:
                if self.handler is None:
                    raise ProtocolError("invoke before a successful init")
                self.invoke(m)
            elif typ == T_FORKED:
                self.chan.write(T_READY, self.forked())
            else:
                raise ProtocolError("unexpected message type %d" % typ)


class SerializationError(Exception):
    pass


def error_payload(msg):
    payload = json.dumps(msg).encode()
    if len(payload) > MAX_FRAME:
        msg = dict(msg, trace=msg.get("trace", "")[:4096], message=msg.get("message", "")[:4096])
        payload = json.dumps(msg).encode()
    return payload


def warm_handler(event, context):
    print("warm", event.get("name"))
    return {"function": context.function_name, "invocation": context.invocation_id,
            "remaining_ms": context.get_remaining_time_in_millis()}


def openssl_rand():
    """Returns _ssl (ssl.RAND_add is _ssl.RAND_add) if OpenSSL is loaded in
    this process, else None.

    OpenSSL 3 reseeds its DRBGs only when getpid() changes, and a clone keeps
    its template's pid, so forked() reseeds them with RAND_add. The first call
    (from load, in the template) pays what the fork path should not: importing
    _ssl where only _hashlib loaded libcrypto (~3.5 ms here) and instantiating
    the primary DRBG (~1 ms); a clone's RAND_add then costs ~2 us.
    """
    if "_ssl" not in sys.modules and "_hashlib" not in sys.modules:
        return None
    import _ssl
    _ssl.RAND_status()  # instantiates the primary DRBG; a no-op after
    return _ssl


def ensure_std_fds():
    for fd in (0, 1, 2):
        try:
            os.fstat(fd)
        except OSError:
            null = os.open(os.devnull, os.O_RDWR)
            if null != fd:
                os.dup2(null, fd)
                os.close(null)
    if sys.stdout is None:
        sys.stdout = open(1, "w", closefd=False)
    if sys.stderr is None:
        sys.stderr = open(2, "w", closefd=False)


def main():
    fd = int(os.environ.get("CATALYZER_CONTROL_FD", "3"))
    ensure_std_fds()
    os.set_inheritable(fd, False)  # not passed to the handler's subprocesses
    chan = Channel(fd)
    try:
        return Agent(chan).serve()
    except ProtocolError as e:
        try:
            chan.write(T_ERROR, {"type": "ProtocolError", "message": str(e)})
        except OSError:
            pass
        return 2
    except (BrokenPipeError, ConnectionResetError):
        return 0


if __name__ == "__main__":
    sys.exit(main())
