"""Speed of fewshot against the plain libraries it wraps, each as a ratio measured in one run.

    OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 nice -n 10 .venv/bin/python benchmarks/speed.py

writes benchmarks/speed.json. The baseline is the script a user would write by hand
(``SCRIPT`` below): sentence-transformers encodes the texts, numpy answers by a weighted kNN
vote over the same support set's vectors (made beforehand, so the script does not pay for
them), or by the same SetFit model's fine-tuned body and head.

1. one text, cold process: ``fewshot classify TEXT`` vs the script, for the retrieval stage
   (examples/tickets.csv) and for a serving SetFit model (trained on it); with the peak
   memory (max RSS) of each process;
2. 2,000 texts, cold process: ``fewshot classify --input FILE`` vs the script on the same
   texts (--dataset's test split, --n support examples per label), with the labels' agreement
   between fewshot's fast path and its torch reference path (``FEWSHOT_ONNX=0``, run once),
   between fewshot and the script, and each one's accuracy;
3. ``--help``: the slowest of ``fewshot --help`` and every ``fewshot CMD --help``, against a
   bare ``python -c pass``;
4. SetFit training (``--parts training``): ``Workspace.train`` vs the plain setfit library.

The two sides alternate --repeat times and each keeps its best run, so a burst of load on
the shared machine hits both. Then run benchmarks/report.py.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from common import DEFAULT_DATA, HERE, ROOT, machine, read_split, sample_support, write_json

PY = sys.executable
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
# Runs a command with its stdout to the file argv[1] and prints its wall seconds and peak RSS
# (KiB), measured from a parent whose only child is that command (RUSAGE_CHILDREN).
MEASURE = (
    "import resource, subprocess, sys, time; t = time.perf_counter(); "
    "subprocess.run(sys.argv[2:], check=True, stdout=open(sys.argv[1], 'w')); "
    "print(time.perf_counter() - t, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)"
)
SCRIPT = r"""
import json, sys
import numpy as np
from sentence_transformers import SentenceTransformer

mode, model_dir, data, source = sys.argv[1:5]
if source.startswith("text:"):
    texts = [source[5:]]
else:
    texts = open(source, encoding="utf-8").read().split("\n")
model = SentenceTransformer(model_dir, device="cpu")
vectors = model.encode(texts, batch_size=64, normalize_embeddings=True)
if mode == "knn":
    support = np.load(data + ".npy")
    labels = json.load(open(data + ".json"))
    sims = vectors @ support.T
    answers = []
    for row in sims:
        top = np.argsort(-row)[:10]
        votes = {}
        for i in top:
            weight = float(np.exp((row[i] - row[top[0]]) / 0.05))
            votes[labels[i]] = votes.get(labels[i], 0.0) + weight
        answers.append(max(votes, key=votes.get))
else:
    from safetensors.numpy import load_file
    head = load_file(data + "/head.safetensors")
    classes = json.load(open(data + "/head.json"))["classes"]
    logits = vectors @ head["coef"].T + head["intercept"]
    answers = [classes[i] for i in logits.argmax(axis=1)]
print("\n".join(answers))
"""


def measure(
    command: list[str], out: Path, env: dict[str, str] | None = None
) -> tuple[float, float]:
    """Return (seconds, peak MiB) of ``command`` run in a fresh process, its stdout in ``out``."""
    done = subprocess.run([PY, "-c", MEASURE, str(out), *command], check=False,
                          capture_output=True, text=True, env=env or ENV)  # fmt: skip
    if done.returncode:
        raise SystemExit(f"error: {' '.join(command)} failed:\n{done.stderr[-3000:]}")
    seconds, kib = done.stdout.split()
    return float(seconds), float(kib) / 1024


def row(what: str, unit: str, ours: float, base: float, base_name: str,
        **extra: Any) -> dict[str, Any]:  # fmt: skip
    return {"what": what, "unit": unit, "fewshot": ours, "baseline": base,
            "baseline_name": base_name, "ratio": ours / base, **extra}  # fmt: skip


def fewshot_labels(path: Path) -> list[str]:
    return [json.loads(line)["label"] for line in path.read_text().splitlines() if line]


def script_labels(path: Path) -> list[str]:
    return path.read_text(encoding="utf-8").rstrip("\n").split("\n")


def support_files(tmp: Path, name: str, texts: list[str], labels: list[str]) -> str:
    """Write the support set's vectors (sentence-transformers) and labels for the script."""
    from fewshot.embed import Encoder, encode_with

    np.save(tmp / f"{name}.npy", encode_with(Encoder("default").backend, texts, 64))
    (tmp / f"{name}.json").write_text(json.dumps(labels))
    return str(tmp / name)


def alternate(ours: list[str], base: list[str], tmp: Path, repeat: int) -> dict[str, Any]:
    """Run ``ours`` and ``base`` alternately; return each one's best time, peak and output."""
    runs: dict[str, list[tuple[float, float]]] = {"ours": [], "base": []}
    for _ in range(repeat):
        runs["ours"].append(measure(ours, tmp / "ours.out"))
        runs["base"].append(measure(base, tmp / "base.out"))
    return {
        "ours": min(s for s, _ in runs["ours"]), "base": min(s for s, _ in runs["base"]),
        "ours_mib": max(m for _, m in runs["ours"]), "base_mib": max(m for _, m in runs["base"]),
        "ours_out": tmp / "ours.out", "base_out": tmp / "base.out",
    }  # fmt: skip


def one_text(
    store: Path, script: list[str], stage: str, tmp: Path, repeat: int
) -> list[dict[str, Any]]:
    text = "where is my parcel?"
    fewshot = [PY, "-m", "fewshot", "--store", str(store), "classify", "--format", "jsonl", text]
    got = alternate(fewshot, [*script, f"text:{text}"], tmp, repeat)
    [ours], [theirs] = fewshot_labels(got["ours_out"]), script_labels(got["base_out"])
    answered = json.loads(got["ours_out"].read_text())["stage"]
    assert answered == stage, f"expected the {stage} stage to answer, got {answered}"
    name = "the hand-written script (sentence-transformers + numpy)"
    return [
        row(f"one text, cold process, {stage}", "s", got["ours"], got["base"], name,
            target=0.33, labels=[ours, theirs]),
        row(f"peak memory of that process, {stage}", "MiB", got["ours_mib"], got["base_mib"],
            "the same script"),
    ]  # fmt: skip


def retrieval_store(tmp: Path) -> tuple[Path, str]:
    from fewshot.workspace import Workspace

    tickets = list(csv.DictReader((ROOT / "examples" / "tickets.csv").open(encoding="utf-8")))
    with Workspace.create(tmp / "ws", min_per_label=10**6) as ws:
        ws.import_file(ROOT / "examples" / "tickets.csv")
    data = support_files(
        tmp, "tickets", [r["text"] for r in tickets], [r["label"] for r in tickets]
    )
    return tmp / "ws", data


def setfit_store(tmp: Path) -> Path:
    """A copy of the tickets workspace with a SetFit model that serves (trained a few steps)."""
    from fewshot.workspace import Workspace

    with Workspace.create(tmp / "ws-setfit", min_per_label=6) as ws:
        ws.import_file(ROOT / "examples" / "tickets.csv", train="never")
        ws.config("max_steps", "8")
        report = ws.train(force=True)
        assert report is not None
        if not report.promoted:  # the gate keeps it out (retrieval is perfect here): serve it
            ws.rollback(report.version)
        assert ws.classify(["warm up: export on first use"])[0].stage == "setfit"
        return tmp / "ws-setfit" / "models" / str(report.version)


def cold(tmp: Path, repeat: int) -> list[dict[str, Any]]:
    store, data = retrieval_store(tmp)
    rows = one_text(store, [PY, str(tmp / "script.py"), "knn", resolve(), data], "retrieval",
                    tmp, repeat)  # fmt: skip
    model = setfit_store(tmp)
    script = [PY, str(tmp / "script.py"), "head", str(model / "body"), str(model)]
    return rows + one_text(tmp / "ws-setfit", script, "setfit", tmp, repeat)


def resolve() -> str:
    from fewshot.embed import resolve_model

    return resolve_model("default")


def batch(tmp: Path, args: argparse.Namespace) -> list[dict[str, Any]]:
    from fewshot.workspace import Workspace

    train_texts, train_labels = read_split(args.data_dir, args.dataset, "train")
    test_texts, test_labels = read_split(args.data_dir, args.dataset, "test")
    texts = [" ".join(t.split()) for t in test_texts[: args.texts]]
    gold = test_labels[: args.texts]
    (tmp / "texts.txt").write_text("\n".join(texts), encoding="utf-8")
    support, labels = sample_support(train_texts, train_labels, args.n, seed=0)
    with Workspace.create(tmp / "ws-batch", min_per_label=10**6) as ws:
        ws.add(support, labels)
    data = support_files(tmp, "support", support, labels)
    fewshot = [PY, "-m", "fewshot", "--store", str(tmp / "ws-batch"), "classify", "--input",
               str(tmp / "texts.txt"), "--format", "jsonl"]  # fmt: skip
    script = [PY, str(tmp / "script.py"), "knn", resolve(), data, str(tmp / "texts.txt")]
    got = alternate(fewshot, script, tmp, args.repeat)
    fast, theirs = fewshot_labels(got["ours_out"]), script_labels(got["base_out"])
    reference_seconds, _ = measure(fewshot, tmp / "ref.out", {**ENV, "FEWSHOT_ONNX": "0"})
    reference = fewshot_labels(tmp / "ref.out")
    assert len(fast) == len(theirs) == len(reference) == len(texts)

    def share(a: list[str], b: list[str]) -> float:
        return float(np.mean([x == y for x, y in zip(a, b)]))

    extra = {"target": 0.7, "agreement_fast_vs_torch_path": share(fast, reference),
             "agreement_fewshot_vs_script": share(fast, theirs),
             "accuracy": {"fewshot": share(fast, gold), "script": share(theirs, gold),
                          "fewshot_torch_path": share(reference, gold)}}  # fmt: skip
    name = "the hand-written script (sentence-transformers + numpy kNN)"
    n = len(texts)
    return [
        row(f"{n} texts, cold process, retrieval", "s", got["ours"], got["base"], name, **extra),
        row(f"{n} texts, cold process, fast path vs its torch path", "s", got["ours"],
            reference_seconds, "fewshot classify with FEWSHOT_ONNX=0 (one run)"),
    ]  # fmt: skip


def helps(tmp: Path, repeat: int) -> dict[str, Any]:
    from fewshot.cli import cli

    commands = [["--help"], *[[name, "--help"] for name in sorted(cli.commands)]]
    slowest, worst = 0.0, ""
    for args in commands:
        best = min(
            measure([PY, "-m", "fewshot", *args], tmp / "help.out")[0] for _ in range(repeat)
        )
        if best > slowest:
            slowest, worst = best, " ".join(args)
    bare = min(measure([PY, "-c", "pass"], tmp / "help.out")[0] for _ in range(repeat))
    return row(f"slowest --help of {len(commands)} (fewshot {worst})", "s", slowest, bare,
               "python -c pass", limit=0.3)  # fmt: skip


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
    parser.add_argument("--texts", type=int, default=2000, help="texts for the batch")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--parts", default="cold,batch,help", help="cold,batch,help,training")
    parser.add_argument("--out", type=Path, default=HERE / "speed.json")
    args = parser.parse_args()

    parts = set(args.parts.split(","))
    rows, notes = [], []
    with tempfile.TemporaryDirectory(prefix="fewshot-speed-") as name:
        tmp = Path(name)
        (tmp / "script.py").write_text(SCRIPT, encoding="utf-8")
        if "help" in parts:
            rows.append(helps(tmp, args.repeat))
        if "cold" in parts:
            rows += cold(tmp, args.repeat)
        if "batch" in parts:
            rows += batch(tmp, args)
        if "training" in parts:
            train_texts, train_labels = read_split(args.data_dir, args.dataset, "train")
            texts, labels = sample_support(train_texts, train_labels, args.n, seed=0)
            result = training(tmp, texts, labels, seed=0)
            if "skipped" in result:
                notes.append(f"{result['what']} not measured: {result['skipped']}.")
            else:
                rows.append(result)
    threads = os.environ.get("OMP_NUM_THREADS", "unset")
    notes.append(f"{time.strftime('%H:%M UTC', time.gmtime())}: {', '.join(sorted(parts))}; "
                 f"batch on {args.dataset}, {args.n} per label, seed 0, first {args.texts} test "
                 f"texts; best of {args.repeat}; OMP_NUM_THREADS={threads}.")  # fmt: skip
    # SetFit training rows of earlier runs are kept (each row is a ratio measured within one
    # run, so rows of different runs stay comparable); every other row is this run's.
    old = json.loads(args.out.read_text()) if args.out.exists() else {"rows": [], "notes": []}
    kept = [r for r in old["rows"] if r["what"].startswith("SetFit training")
            and r["what"] not in {x["what"] for x in rows}]  # fmt: skip
    report = {"machine": machine(), "when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
              "rows": rows + kept, "notes": [*old.get("notes", [])[-6:], *notes]}  # fmt: skip
    write_json(args.out, report)
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
