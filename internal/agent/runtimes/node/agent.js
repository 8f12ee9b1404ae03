'use strict';
// Catalyzer Node.js agent: speaks the control protocol (docs/PROTOCOL.md)
// on the fd named by CATALYZER_CONTROL_FD (default 3), loads the handler
// named in init (CommonJS exports.<name>: sync, async, or callback-style
// with a third parameter) and calls it once per invoke. On forked it
// reseeds OpenSSL (reseed.c), Node's pre-generated randomUUID and
// randomInt caches and Math.random.
//
// It never writes to stdout or stderr itself. It exits 0 on EOF of the
// control channel and 2 on a protocol violation by the daemon (after an
// error frame that says why).
//
// Clock: process.hrtime.bigint() is uv_hrtime(), which on Linux is
// clock_gettime(CLOCK_MONOTONIC): the daemon's clock. The tests check it.

const crypto = require('crypto');
const net = require('net');
const path = require('path');

const PROTOCOL_VERSION = 1;
const MAX_FRAME = 8 << 20;
const MAX_LOG_FRAME = 64 << 10; // the daemon refuses a longer log frame
const T = { INIT: 1, READY: 2, INVOKE: 3, RESULT: 4, ERROR: 5, LOG: 6, FORKED: 7 };
const DEFAULT_OUTPUT_LIMIT = 64 << 10;

const now = () => process.hrtime.bigint();

class ProtocolError extends Error {}
class SerializationError extends Error {}

const fd = parseInt(process.env.CATALYZER_CONTROL_FD || '3', 10);
const sock = new net.Socket({ fd, readable: true, writable: true });

function send(type, payload) {
  const body = Buffer.from(payload, 'utf8');
  const h = Buffer.alloc(8);
  h.write('CZ', 0, 'latin1');
  h[2] = PROTOCOL_VERSION;
  h[3] = type;
  h.writeUInt32BE(body.length, 4);
  sock.write(Buffer.concat([h, body]));
}

// TYPE overrides the reported type of an error the agent makes itself.
const TYPE = Symbol('catalyzer.type');
function typed(err, type) { err[TYPE] = type; return err; }

function errorInfo(e) {
  let type = typeof e;
  let message = String(e);
  let trace = '';
  if (e !== null && typeof e === 'object') {
    type = e[TYPE] || (e.constructor && e.constructor.name) || e.name || 'Error';
    message = e.message !== undefined ? String(e.message) : message;
    trace = e.stack ? String(e.stack) : '';
  }
  return { type, message, trace };
}

// Capture of process.stdout/stderr writes during one invocation (Node has
// no cheap fd-level capture; native addons writing to fd 1 are not caught).
class Capture {
  constructor() {
    this.orig = { stdout: process.stdout.write, stderr: process.stderr.write };
    this.active = false;
  }
  start(limit) {
    this.limit = limit;
    this.bufs = { stdout: [], stderr: [] };
    this.sizes = { stdout: 0, stderr: 0 };
    this.truncated = false;
    this.active = true;
    for (const name of ['stdout', 'stderr']) {
      const cap = this;
      process[name].write = function (chunk, encoding, cb) {
        if (typeof encoding === 'function') { cb = encoding; encoding = undefined; }
        if (cap.active) {
          const b = Buffer.isBuffer(chunk) || chunk instanceof Uint8Array
            ? Buffer.from(chunk) : Buffer.from(String(chunk), encoding || 'utf8');
          const room = cap.limit - cap.sizes[name];
          if (b.length > room) cap.truncated = true;
          if (room > 0) {
            const keep = b.length > room ? b.subarray(0, room) : b;
            cap.bufs[name].push(keep);
            cap.sizes[name] += keep.length;
          }
        }
        if (typeof cb === 'function') process.nextTick(cb);
        return true;
      };
    }
  }
  stop() {
    this.active = false;
    process.stdout.write = this.orig.stdout;
    process.stderr.write = this.orig.stderr;
    return {
      stdout: Buffer.concat(this.bufs.stdout).toString('utf8'),
      stderr: Buffer.concat(this.bufs.stderr).toString('utf8'),
      truncated: this.truncated,
    };
  }
}

// OpenSSL's reseed (reseed.c), loaded now, off the fork path (its dlopen
// costs ~130 us here). A load failure (a noexec agent dir, a node without
// OpenSSL) is kept and fails the first forked message instead: a clone
// that cannot reseed must not serve, but a scratch instance never forks.
const openssl = (() => {
  try {
    const m = { exports: {} };
    process.dlopen(m, path.join(__dirname, 'reseed.node'));
    return { reseed: m.exports.reseed, error: null };
  } catch (e) {
    return { reseed: null, error: e };
  }
})();

// Node serves randomUUID from bytes pre-generated 128 UUIDs at a time, and
// randomInt from a cache of 1024 6-byte draws, both in buffers private to
// its crypto module: a clone would hand out what is left of its template's
// batch. So the agent wraps every way in (crypto.randomUUID, randomInt and
// webcrypto's randomUUID, before the handler loads, so the handler only
// ever sees the wrappers; loading crypto here costs ~3 ms of scratch boot)
// and, in a clone, drains each cache on its first use there: enough calls
// that Node refills it from the reseeded OpenSSL. Draining in forked()
// would put ~0.1 ms (UUIDs) and ~0.3 ms (randomInt) on every fork boot;
// this way only a clone that uses them pays, once.
const UUID_BATCH = 128;
const RANDOM_INT_DRAWS = 1024;
const RAND_MAX = 0xFFFF_FFFF_FFFF; // randomInt's largest range: one draw per call
const stale = { uuid: false, int: false };
const nodeRandomUUID = crypto.randomUUID;
const nodeRandomInt = crypto.randomInt;
const webCrypto = Object.getPrototypeOf(crypto.webcrypto);
const webRandomUUID = webCrypto.randomUUID;
function drainUUIDs() {
  stale.uuid = false;
  for (let i = 0; i < UUID_BATCH; i++) nodeRandomUUID(); // a refill happens within 128
}
crypto.randomUUID = function randomUUID(options) {
  if (stale.uuid) drainUUIDs();
  return nodeRandomUUID(options);
};
webCrypto.randomUUID = function randomUUID() {
  if (stale.uuid) drainUUIDs();
  return webRandomUUID.call(this);
};
crypto.randomInt = function randomInt(min, max, callback) {
  if (stale.int) {
    stale.int = false;
    for (let i = 0; i <= RANDOM_INT_DRAWS; i++) nodeRandomInt(RAND_MAX); // the last one refills
  }
  return nodeRandomInt(min, max, callback);
};

let functionName = '';
let handler = null;
let outputLimit = DEFAULT_OUTPUT_LIMIT;
const capture = new Capture();
let current = null; // { fail(e) } while an invocation runs

function load(m) {
  if (m.version !== PROTOCOL_VERSION) {
    throw new ProtocolError(`init for protocol version ${m.version}, agent speaks version ${PROTOCOL_VERSION}`);
  }
  functionName = String(m.function || '');
  outputLimit = m.output_limit > 0 ? m.output_limit : DEFAULT_OUTPUT_LIMIT;
  const codeDir = m.code_dir || '.';
  const spec = String(m.handler || '');
  try {
    const dot = spec.lastIndexOf('.');
    if (dot <= 0 || dot === spec.length - 1) {
      throw new TypeError(`handler ${JSON.stringify(spec)} is not of the form module.function`);
    }
    const modName = spec.slice(0, dot);
    const attr = spec.slice(dot + 1);
    try { process.chdir(codeDir); } catch (_) { /* keep the cwd */ }
    const file = path.resolve(codeDir, modName.replace(/\./g, '/'));
    let mod;
    capture.start(0); // output at load time is not kept
    try {
      mod = require(file);
    } catch (e) {
      if (e && e.code === 'MODULE_NOT_FOUND') {
        throw typed(e, 'ModuleNotFoundError');
      }
      throw e;
    } finally {
      capture.stop();
    }
    if (mod === null || mod === undefined || !(attr in Object(mod))) {
      throw typed(new Error(`module ${JSON.stringify(modName)} has no export ${JSON.stringify(attr)}`), 'AttributeError');
    }
    if (typeof mod[attr] !== 'function') {
      throw new TypeError(`${modName}.${attr} is not a function`);
    }
    handler = mod[attr];
  } catch (e) {
    if (e instanceof ProtocolError) throw e;
    send(T.ERROR, JSON.stringify(errorInfo(e)));
    return;
  }
  send(T.READY, `{"version":${PROTOCOL_VERSION},"pid":${process.pid},"ready_ns":${now()}}`);
}

async function invoke(m) {
  const id = String(m.id === undefined ? '' : m.id);
  const deadline = m.deadline_ms > 0 ? now() + BigInt(Math.floor(m.deadline_ms)) * 1000000n : null;
  const context = {
    functionName, function_name: functionName,
    invocationId: id, awsRequestId: id,
    getRemainingTimeInMillis() {
      if (deadline === null) return 0;
      const left = Number((deadline - now()) / 1000000n);
      return left > 0 ? left : 0;
    },
    log(message) {
      // Cut to fit MAX_LOG_FRAME.
      let m = String(message);
      let payload;
      for (;;) {
        payload = JSON.stringify({ id, message: m });
        const n = Buffer.byteLength(payload);
        if (n <= MAX_LOG_FRAME) break;
        m = m.slice(0, Math.max(0, Math.floor(m.length * MAX_LOG_FRAME / n) - 64));
      }
      send(T.LOG, payload);
    },
  };
  capture.start(outputLimit);
  const entry = now();
  let ret;
  let exc = null;
  let failed = false;
  try {
    ret = call(m.event === undefined ? null : m.event, context);
    if (ret !== null && typeof ret === 'object' && typeof ret.then === 'function') {
      ret = await new Promise((resolve, reject) => {
        current = { fail: reject };
        ret.then(resolve, reject);
      });
    }
  } catch (e) {
    exc = e;
    failed = true;
  }
  current = null;
  const exit = now();
  const out = capture.stop();
  const meta = `"id":${JSON.stringify(id)},"entry_ns":${entry},"exit_ns":${exit},` +
    `"stdout":${JSON.stringify(out.stdout)},"stderr":${JSON.stringify(out.stderr)},"truncated":${out.truncated}`;
  let output;
  if (!failed) {
    try {
      output = JSON.stringify(ret);
      if (output === undefined) output = 'null';
    } catch (e) {
      exc = new SerializationError(`handler result is not JSON-serialisable: ${e.message}`);
      failed = true;
    }
  }
  if (failed) {
    const info = errorInfo(exc);
    send(T.ERROR, `{${meta},"type":${JSON.stringify(info.type)},"message":${JSON.stringify(info.message)},"trace":${JSON.stringify(info.trace)}}`);
    return;
  }
  const payload = `{${meta},"output":${output}}`;
  if (Buffer.byteLength(payload) > MAX_FRAME) {
    send(T.ERROR, `{${meta},"type":"ResultTooLarge","message":"result frame exceeds the limit of ${MAX_FRAME} bytes"}`);
    return;
  }
  send(T.RESULT, payload);
}

// call calls the handler. One that declares a third parameter gets
// Lambda's callback(err, result): the first of the callback and a returned
// promise decides, later calls of either are ignored, and an error passed
// to the callback is the invocation's error, like a thrown one. A throw
// before either decides fails the invocation too.
function call(event, context) {
  if (handler.length < 3) return handler(event, context);
  return new Promise((resolve, reject) => {
    let done = false;
    const settle = (fn, v) => { if (!done) { done = true; fn(v); } };
    const callback = (err, result) => {
      if (err !== null && err !== undefined) settle(reject, err);
      else settle(resolve, result);
    };
    const ret = handler(event, context, callback);
    if (ret !== null && typeof ret === 'object' && typeof ret.then === 'function') {
      ret.then((v) => settle(resolve, v), (e) => settle(reject, e));
    }
  });
}

// forked reseeds what a clone shares with its template and siblings:
// OpenSSL's DRBGs (which would reseed only on a getpid() change, and a
// clone keeps its template's pid), then the randomUUID and randomInt
// caches (drained on first use, above) and Math.random: V8's state cannot
// be reseeded from JS, so it is replaced by an xorshift128 generator
// seeded from the reseeded OpenSSL.
function forked() {
  if (openssl.error) {
    throw typed(new Error(`cannot reseed OpenSSL: ${openssl.error.message}`), 'ReseedError');
  }
  openssl.reseed();
  stale.uuid = stale.int = true;
  const s = crypto.randomFillSync(new Uint32Array(4));
  if ((s[0] | s[1] | s[2] | s[3]) === 0) s[0] = 1;
  const next = () => {
    let t = s[3];
    const x = s[0];
    s[3] = s[2]; s[2] = s[1]; s[1] = x;
    t ^= t << 11; t ^= t >>> 8;
    s[0] = (t ^ x ^ (x >>> 19)) >>> 0;
    return s[0];
  };
  Math.random = function random() {
    return ((next() >>> 5) * 67108864 + (next() >>> 6)) / 9007199254740992;
  };
  send(T.READY, `{"version":${PROTOCOL_VERSION},"pid":${process.pid},"ready_ns":${now()}}`);
}

function fatal(e) {
  const payload = JSON.stringify({ type: 'ProtocolError', message: e.message });
  const h = Buffer.alloc(8);
  h.write('CZ', 0, 'latin1');
  h[2] = PROTOCOL_VERSION; h[3] = T.ERROR;
  h.writeUInt32BE(Buffer.byteLength(payload), 4);
  sock.write(Buffer.concat([h, Buffer.from(payload)]), () => process.exit(2));
  setTimeout(() => process.exit(2), 1000).unref();
}

async function handle(type, m) {
  switch (type) {
    case T.INIT:
      if (handler !== null) throw new ProtocolError('second init');
      load(m);
      break;
    case T.INVOKE:
      if (handler === null) throw new ProtocolError('invoke before a successful init');
      await invoke(m);
      break;
    case T.FORKED:
      try {
        forked();
      } catch (e) {
        send(T.ERROR, JSON.stringify(errorInfo(e)));
      }
      break;
    default:
      throw new ProtocolError(`unexpected message type ${type}`);
  }
}

// Errors that escape the handler's promise chain fail the running
// invocation; between invocations they go to the daemon as log frames.
function stray(e) {
  if (current) { current.fail(e); return; }
  const info = errorInfo(e);
  send(T.LOG, JSON.stringify({ message: `uncaught ${info.type}: ${info.message}\n${info.trace}` }));
}
process.on('uncaughtException', stray);
process.on('unhandledRejection', stray);

let buf = Buffer.alloc(0);
let chain = Promise.resolve();
let dead = false;

sock.on('data', (chunk) => {
  if (dead) return;
  buf = buf.length ? Buffer.concat([buf, chunk]) : chunk;
  while (buf.length >= 8) {
    try {
      if (buf[0] !== 0x43 || buf[1] !== 0x5a) throw new ProtocolError('bad frame magic');
      if (buf[2] !== PROTOCOL_VERSION) {
        throw new ProtocolError(`daemon sent protocol version ${buf[2]}, agent speaks version ${PROTOCOL_VERSION}`);
      }
      const n = buf.readUInt32BE(4);
      if (n > MAX_FRAME) throw new ProtocolError(`frame of ${n} bytes exceeds the limit of ${MAX_FRAME}`);
      if (buf.length < 8 + n) return;
      const type = buf[3];
      let m;
      try {
        m = JSON.parse(buf.subarray(8, 8 + n).toString('utf8'));
      } catch (e) {
        throw new ProtocolError(`frame payload is not JSON: ${e.message}`);
      }
      if (m === null || typeof m !== 'object' || Array.isArray(m)) throw new ProtocolError('frame payload is not a JSON object');
      buf = buf.subarray(8 + n);
      chain = chain.then(() => handle(type, m)).catch((e) => {
        if (e instanceof ProtocolError) { dead = true; fatal(e); } else { stray(e); }
      });
    } catch (e) {
      dead = true;
      fatal(e);
      return;
    }
  }
});
sock.on('end', () => { chain.then(() => process.exit(0)); });
sock.on('error', () => process.exit(0));
