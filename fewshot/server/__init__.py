"""``fewshot serve``: one workspace over HTTP (the ``serve`` extra: FastAPI on uvicorn).

:mod:`~fewshot.server.worker` owns the open workspace in one thread and batches classify
requests; :mod:`~fewshot.server.app` is the HTTP API (routes, the token, error bodies);
:mod:`~fewshot.server.limits` refuses bodies over the limit; :mod:`~fewshot.server.schema`
holds the bodies (they make ``/openapi.json``).
"""
