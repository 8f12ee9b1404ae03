# A function with a large in-memory cache built at init (~50 MB of Python
# objects). Each invocation walks all of it: reading an object writes its
# reference count, so a first invocation after fork or restore pays a
# copy-on-write fault on every page of the cache. catalyzer bench
# --first-invocation measures it against a scratch instance's second
# invocation.
CACHE = [("%040d" % i) for i in range(560_000)]


def handler(event, context):
    n = 0
    for s in CACHE:
        n += len(s)
    return {"bytes": n, "objects": len(CACHE)}
