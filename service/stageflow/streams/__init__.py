"""OFREP event streams: a small ASGI server that holds SSE connections cheaply (ADR-0008).

The bulk evaluation answer's ``eventStreams`` point here. A connection is one coroutine, not a
thread, so thousands of idle clients cost memory, not threads; one task per process reads the
event log (``STAGEFLOW_STREAM_POLL``) and hands each new ``refetchEvaluation`` to the connections
of its app and stage. ``stageflow serve`` runs it as its own process (uvicorn) next to gunicorn,
on ``STAGEFLOW_STREAM_PORT``.
"""
