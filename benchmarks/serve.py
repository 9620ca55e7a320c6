"""``fewshot serve`` against the CLI: one-text requests at 1, 4 and 16 clients, in one run.

    OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 nice -n 10 .venv/bin/python benchmarks/serve.py

Writes benchmarks/serve.json. The workspace is --n examples per label of a shared dataset;
the requests are its test texts, one per request. The baselines, measured in the same run
and alternating with the server's rounds so a burst of load hits both:

- ``fewshot classify TEXT`` in a fresh process (what a script does without a server): its
  wall time per call;
- ``Workspace.classify([text])`` in a warm process (the API, no HTTP): its time per call.

For each number of clients, each client sends its requests one after another on its own
keep-alive connection; requests/s is all the requests over the round's wall time, p50 and
p99 the latency of one request. Ratios: requests/s x the CLI's seconds per call (how many
requests the server answers in the time of one CLI call), and the CLI's time over p50.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from common import DEFAULT_DATA, HERE, ROOT, machine, read_split, sample_support, write_json

PY = sys.executable
ENV = {**os.environ, "PYTHONPATH": str(ROOT)}


def start_server(store: Path, port: int, log: Path) -> subprocess.Popen[bytes]:
    command = [PY, "-m", "fewshot", "--store", str(store), "serve", "--port", str(port)]
    with log.open("wb") as out:
        process = subprocess.Popen([*command, "--log-level", "warning"], stdout=out, stderr=out,
                                   env=ENV)  # fmt: skip
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        try:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            connection.request("GET", "/healthz")
            if connection.getresponse().status == 200:
                return process
        except OSError:
            time.sleep(0.5)
    process.kill()
    raise SystemExit(f"the server did not start: {log.read_text()}")


def client(port: int, texts: list[str], latencies: list[float]) -> None:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    headers = {"Content-Type": "application/json"}
    for text in texts:
        start = time.perf_counter()
        connection.request("POST", "/classify", json.dumps({"text": text}), headers)
        response = connection.getresponse()
        body = response.read()
        latencies.append(time.perf_counter() - start)
        if response.status != 200:
            raise SystemExit(f"request failed: {response.status} {body!r}")
    connection.close()


def serve_round(port: int, texts: list[str], clients: int) -> dict[str, Any]:
    """Send ``texts`` from ``clients`` threads at once, each its share one by one."""
    latencies: list[float] = []
    shares = [texts[i::clients] for i in range(clients)]
    threads = [threading.Thread(target=client, args=(port, s, latencies)) for s in shares]
    start = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - start
    ordered = sorted(latencies)
    return {
        "clients": clients,
        "requests": len(texts),
        "requests_per_s": len(texts) / wall,
        "p50_s": statistics.median(ordered),
        "p99_s": ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))],
    }


def cli_call(store: Path, text: str) -> float:
    start = time.perf_counter()
    subprocess.run([PY, "-m", "fewshot", "--store", str(store), "classify", text, "--format",
                    "json"], check=True, stdout=subprocess.DEVNULL, env=ENV)  # fmt: skip
    return time.perf_counter() - start


def api_calls(workspace: Any, texts: list[str]) -> float:
    """Seconds per ``Workspace.classify([text])`` (warm), over ``texts``."""
    workspace.classify(texts[:2])
    start = time.perf_counter()
    for text in texts:
        workspace.classify([text])
    return (time.perf_counter() - start) / len(texts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--dataset", default="ag_news")
    parser.add_argument("--n", type=int, default=8, help="examples per label in the workspace")
    parser.add_argument("--requests", type=int, default=160, help="requests per round")
    parser.add_argument("--clients", default="1,4,16")
    parser.add_argument("--cli-calls", type=int, default=2, help="CLI calls between rounds")
    parser.add_argument("--port", type=int, default=8731)
    parser.add_argument("--out", type=Path, default=HERE / "serve.json")
    args = parser.parse_args()

    from fewshot.workspace import Workspace

    train_texts, train_labels = read_split(args.data_dir, args.dataset, "train")
    test_texts, _ = read_split(args.data_dir, args.dataset, "test")
    support, labels = sample_support(train_texts, train_labels, args.n, seed=0)
    queries = test_texts[: args.requests]
    with tempfile.TemporaryDirectory(prefix="fewshot-serve-bench-") as name:
        store = Path(name) / "ws"
        with Workspace.create(store, min_per_label=10**6) as ws:
            ws.add(support, labels, train="never")
        server = start_server(store, args.port, Path(name) / "serve.log")
        rounds, cli, api = [], [], []
        try:
            with Workspace.open(store) as ws:
                for i, clients in enumerate(int(c) for c in args.clients.split(",")):
                    cli += [cli_call(store, queries[i + j]) for j in range(args.cli_calls)]
                    api.append(api_calls(ws, queries[:20]))
                    rounds.append(serve_round(args.port, queries, clients))
                cli += [cli_call(store, queries[-1 - j]) for j in range(args.cli_calls)]
        finally:
            server.terminate()
            server.wait()
    cli_s, api_s = statistics.median(cli), statistics.median(api)
    for r in rounds:
        r["requests_in_one_cli_call"] = r["requests_per_s"] * cli_s
        r["cli_s_over_p50"] = cli_s / r["p50_s"]
        r["p50_over_api_call"] = r["p50_s"] / api_s
    report = {
        "machine": machine(),
        "when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "workspace": f"{args.dataset}, {args.n} per label ({len(support)} examples), retrieval",
        "threads": {k: os.environ.get(k) for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")},
        "cli_seconds_per_call": cli_s,
        "cli_calls": cli,
        "api_seconds_per_call": api_s,
        "rounds": rounds,
    }
    write_json(args.out, report)
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
