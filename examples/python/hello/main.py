import os


def handler(event, context):
    name = "world"
    if isinstance(event, dict) and event.get("name"):
        name = event["name"]
    print("hello from python:", name)
    return {
        "hello": name,
        "runtime": "python",
        "pid": os.getpid(),
        "function": context.function_name,
        "invocation": context.invocation_id,
        "remaining_ms": context.get_remaining_time_in_millis(),
    }
