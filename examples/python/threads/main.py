"""A Python function with threads alive at init: a ticker, a thread pool
with its workers started, and numpy's OpenBLAS pool (when numpy is
installed). Used by the multi-threaded boot tests and
scripts/bench-threads.sh."""
import os, random, threading, time, uuid
from concurrent.futures import ThreadPoolExecutor
ticks = 0
def tick():
    global ticks
    while True:
        ticks += 1
        time.sleep(0.002)
threading.Thread(target=tick, daemon=True).start()
pool = ThreadPoolExecutor(max_workers=3)
list(pool.map(lambda x: x * x, range(30)))
try:
    import numpy
    a = numpy.random.rand(200, 200)
    float((a @ a).sum())
except ImportError:
    numpy = None
random.random()
def handler(event, context):
    t0 = ticks
    time.sleep(0.03)
    for _ in range(500):  # late on a loaded machine is not stopped: up to 5 s more
        if ticks != t0:
            break
        time.sleep(0.01)
    out = {"ticking": ticks > t0, "pool": sum(pool.map(lambda x: x * x, range(10))),
           "random": random.random(), "urandom": os.urandom(8).hex(), "uuid": str(uuid.uuid4())}
    if numpy is not None:
        b = numpy.arange(40000, dtype=float).reshape(200, 200)
        out["blas"] = float((b @ b).trace())
        out["np_random"] = float(numpy.random.rand())
    return out
