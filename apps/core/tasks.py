from apps.core.instrumentation import instrumented_task


@instrumented_task(name="core.ping")
def ping() -> str:
    """Round trip through the broker and a worker; used by operators and the worker test."""
    return "pong"
