"""Bulk classification on Ray Data against a local classify, in one run, same texts.

    OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 nice -n 10 .venv/bin/python benchmarks/ray_bulk.py

Writes benchmarks/ray_bulk.json. The workspace is --n examples per label of a shared
dataset (retrieval answers); the texts are its first --texts test texts. Each round times,
one after another so a burst of load hits all of them:

- local: ``Workspace.open`` and ``classify`` in batches of --batch-size (what
  ``classify --output`` does), the encoder loaded in the timed part;
- Ray with 1 and with 2 workers: ``fewshot.ray.classify_dataset(...).take_all()`` on a
  local Ray started once before the rounds (its start is reported apart), each actor
  loading the snapshot and the encoder in the timed part.

- local_all_threads: the same local run in a child process without the thread limits of
  the line above (what a user's ``classify --output`` gets: every core for one process).

Reported: texts per second, best of --rounds, and each figure as a ratio to the local one;
the labels from Ray must equal the local ones (``labels_equal``). Ray's actors run one
thread each (Ray sets ``OMP_NUM_THREADS=1`` for a one-CPU actor); run with the line above
so that ``local`` is like for like with one worker.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from common import DEFAULT_DATA, HERE, machine, read_split, sample_support, write_json


def local(store: Path, texts: list[str], batch_size: int) -> tuple[float, list[Any]]:
    from fewshot.workspace import Workspace

    start = time.perf_counter()
    labels: list[Any] = []
    with Workspace.open(store) as ws:
        for i in range(0, len(texts), batch_size):
            labels += [p.label for p in ws.classify(texts[i : i + batch_size])]
    return time.perf_counter() - start, labels


def local_all_threads(store: Path, texts: list[str], batch_size: int) -> tuple[float, list[Any]]:
    """Time :func:`local` in a child process that may use every core."""
    import subprocess
    import sys

    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as stream:
        json.dump(texts, stream)
    code = (
        "import json, sys; from pathlib import Path; sys.path.insert(0, sys.argv[1]); "
        "from ray_bulk import local; "
        "texts = json.load(open(sys.argv[3])); "
        "print(json.dumps(local(Path(sys.argv[2]), texts, int(sys.argv[4]))))"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")}
    args = [sys.executable, "-c", code, str(HERE), str(store), stream.name, str(batch_size)]
    done = subprocess.run(args, env=env, check=True, capture_output=True, text=True)
    os.unlink(stream.name)
    seconds, labels = json.loads(done.stdout.strip().splitlines()[-1])
    return seconds, labels


def on_ray(store: Path, texts: list[str], workers: int, batch_size: int) -> tuple[float, list[Any]]:
    import ray

    import fewshot.ray as fray

    start = time.perf_counter()
    ds = ray.data.from_items([{"row": i, "text": t} for i, t in enumerate(texts)])
    rows = fray.classify_dataset(ds, store, num_workers=workers, batch_size=batch_size)
    labels = [r["label"] for r in sorted(rows.take_all(), key=lambda r: r["row"])]
    return time.perf_counter() - start, labels


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--dataset", default="ag_news")
    parser.add_argument("--n", type=int, default=8, help="examples per label in the workspace")
    parser.add_argument("--texts", type=int, default=2000)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--out", type=Path, default=HERE / "ray_bulk.json")
    args = parser.parse_args()

    import ray

    import fewshot.ray as fray
    from fewshot.workspace import Workspace

    train_texts, train_labels = read_split(args.data_dir, args.dataset, "train")
    texts = read_split(args.data_dir, args.dataset, "test")[0][: args.texts]
    support, labels = sample_support(train_texts, train_labels, args.n, seed=0)
    runs: dict[str, list[float]] = {"local": [], "local_all_threads": [], "ray_1": [], "ray_2": []}
    equal = True
    with tempfile.TemporaryDirectory(prefix="fewshot-ray-bench-") as name:
        store = Path(name) / "ws"
        with Workspace.create(store, min_per_label=10**6) as ws:
            ws.add(support, labels, train="never")
        started = time.perf_counter()
        fray.start(num_workers=2)
        ray_start_s = time.perf_counter() - started
        ray.data.DataContext.get_current().enable_progress_bars = False
        for _ in range(args.rounds):
            seconds, expected = local(store, texts, args.batch_size)
            runs["local"].append(seconds)
            seconds, got = local_all_threads(store, texts, args.batch_size)
            runs["local_all_threads"].append(seconds)
            equal = equal and got == expected
            for workers in (1, 2):
                seconds, got = on_ray(store, texts, workers, args.batch_size)
                runs[f"ray_{workers}"].append(seconds)
                equal = equal and got == expected
        ray.shutdown()
    rate = {key: len(texts) / min(values) for key, values in runs.items()}
    report = {
        "machine": machine(),
        "when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "workspace": f"{args.dataset}, {args.n} per label ({len(support)} examples), retrieval",
        "texts": len(texts),
        "batch_size": args.batch_size,
        "threads": {k: os.environ.get(k) for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")},
        "cpus": os.cpu_count(),
        "ray_start_s": ray_start_s,
        "seconds": runs,
        "texts_per_s": rate,
        "ratio_to_local": {key: rate[key] / rate["local"] for key in runs if key != "local"},
        "ray_2_to_local_all_threads": rate["ray_2"] / rate["local_all_threads"],
        "labels_equal": equal,
    }
    write_json(args.out, report)
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
