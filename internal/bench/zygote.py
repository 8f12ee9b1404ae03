# The zygote floor of catalyzer bench: the same Python function with no
# sandbox, no agent protocol and no HTTP. This process imports the
# handler once; for each request line on stdin it forks, the child parses
# the event and runs the handler, and the parent reads the child's result
# from a pipe and answers on fd 3 with one JSON line of CLOCK_MONOTONIC
# stamps: fork start, fork return in the parent (the kernel fork), handler
# entry in the child, result read by the parent.
import importlib
import json
import os
import sys
import time

code_dir, spec = sys.argv[1], sys.argv[2]
sys.path.insert(0, code_dir)
os.chdir(code_dir)
mod_name, _, attr = spec.rpartition(".")
handler = getattr(importlib.import_module(mod_name.replace("/", ".")), attr)
out = os.fdopen(3, "w", buffering=1)
devnull = os.open(os.devnull, os.O_WRONLY)


class Context:
    function_name = os.environ.get("CATALYZER_FUNCTION", "zygote")
    invocation_id = "zygote"

    def get_remaining_time_in_millis(self):
        return 30000

    def log(self, message):
        pass


out.write(json.dumps({"ready": True}) + "\n")
for line in sys.stdin:
    r, w = os.pipe()
    start = time.monotonic_ns()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(r)
            os.dup2(devnull, 1)
            entry = time.monotonic_ns()
            res = handler(json.loads(line), Context())
            os.write(w, (json.dumps({"entry_ns": entry, "output": res}) + "\n").encode())
        finally:
            os._exit(0)
    forked = time.monotonic_ns()
    os.close(w)
    chunks = []
    while True:  # one line; the child's exit is not waited for
        b = os.read(r, 65536)
        chunks.append(b)
        if not b or b.endswith(b"\n"):
            break
    done = time.monotonic_ns()
    os.close(r)
    try:
        child = json.loads(b"".join(chunks))
    except ValueError:
        child = {"error": "the child wrote no result (see stderr)"}
    out.write(json.dumps({"start_ns": start, "forked_ns": forked, "entry_ns": child.get("entry_ns", 0),
                          "done_ns": done, "error": child.get("error", "")}) + "\n")
    os.waitpid(pid, 0)
