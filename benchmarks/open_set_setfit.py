"""Which in-scope score for a serving SetFit model: the base encoder's, or the fine-tuned one's?

The open-set protocol of ``open_set.py`` (same unknown labels, same support sets), with a
SetFit model trained on the support set (``fewshot.stages.finetune``, the default recipe)
answering. Scores compared, each with its threshold set leave-one-out from the support set:

* ``base``: fewshot's in-scope score over the base encoder (what ``classify`` uses whoever
  answers);
* ``fine-tuned``: the same score computed under the fine-tuned encoder;
* ``head`` (AUROC only): the head's top probability (no threshold: the head was fitted on
  every support example, so there is no unseen score to set one from).

    python benchmarks/open_set_setfit.py --datasets ag_news,trec6 --seeds 0,1
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
from common import DEFAULT_CACHE, DEFAULT_DATA, HERE, EmbeddingCache
from common import write_json as write
from open_set import MODEL, TARGET, figures, open_set_support

NOTE = (
    "`benchmarks/open_set_setfit.py`: the same open-set support sets, a SetFit model trained "
    "on each (the default recipe) answering the test split. `base` is "
    "fewshot's in-scope score over the base encoder, the rule `classify` applies whoever "
    "answers; `fine-tuned` is the same score under the model's fine-tuned encoder, its "
    "threshold set leave-one-out on the same examples the encoder was trained on; `head "
    "probability` is the head's top probability (AUROC only: the head saw every example, so "
    "no unseen score could set its threshold). Target 5%."
)


def cell(cache: EmbeddingCache, data: Path, dataset: str, n: int, seed: int) -> dict[str, Any]:
    """Train SetFit on one open-set support set and score each in-scope score."""
    from fewshot.embed import DEFAULT_MODEL, resolve_model
    from fewshot.metrics import auroc
    from fewshot.stages import scope
    from fewshot.stages.finetune import SetFitConfig, fresh_body, train_model
    from fewshot.stages.retrieval import Memory, Vote

    support, support_labels, test_texts, test_labels, unknown = open_set_support(
        data, dataset, n, seed
    )
    with tempfile.TemporaryDirectory() as tmp:
        body = fresh_body(resolve_model(DEFAULT_MODEL))
        config = SetFitConfig(random_state=seed)
        model = train_model(body, support, support_labels, config, Path(tmp))
    proba = model.head.predict_proba(tuned := model.encode(test_texts))
    answers = np.asarray(model.classes)[proba.argmax(axis=1)]
    right = answers == np.asarray(test_labels)
    oos = np.asarray([t in unknown for t in test_labels])
    vote = Vote()
    base = Memory.build(support, support_labels, cache.encode(support)[0])
    fine = Memory.build(support, support_labels, model.encode(support))
    scores = {
        "base": scope.scored(base, vote, cache.encode(test_texts)[0]),
        "fine-tuned": scope.scored(fine, vote, tuned),
    }
    record: dict[str, Any] = {
        "dataset": dataset,
        "n_per_label": n,
        "seed": seed,
        "unknown": unknown,
        "closed_set_accuracy": float(right[~oos].mean()),
        "head_auroc": auroc(proba.max(axis=1)[~oos], proba.max(axis=1)[oos]),
        "target": TARGET,
    }
    for name, score in scores.items():
        record[name] = figures(np.asarray(score), right, oos)
    return record


def section(records: list[dict[str, Any]]) -> list[str]:
    """Return the RESULTS.md lines of ``open_set_setfit.json``'s records (``report.py``)."""
    out = [
        "| dataset | N | seed | SetFit closed-set accuracy | score | in-scope refused | "
        "OOS recall | AUROC |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in records:
        start = f"| {r['dataset']} | {r['n_per_label']} | {r['seed']} | "
        start += f"{100 * r['closed_set_accuracy']:.1f} | "
        for name in ("base", "fine-tuned"):
            f = r[name]
            out.append(
                f"{start}{name} | {100 * f['in_scope_refused']:.1f} | "
                f"{100 * f['oos_recall']:.1f} | {100 * f['auroc']:.1f} |"
            )
        out.append(f"{start}head probability | - | - | {100 * r['head_auroc']:.1f} |")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", default="ag_news,trec6")
    parser.add_argument("--n", default="8")
    parser.add_argument("--seeds", default="0,1")
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--out", type=Path, default=HERE / "open_set_setfit.json")
    args = parser.parse_args()
    cache = EmbeddingCache(DEFAULT_CACHE, MODEL)
    records = []
    for dataset in args.datasets.split(","):
        for n in args.n.split(","):
            for seed in args.seeds.split(","):
                records.append(cell(cache, args.data_dir, dataset, int(n), int(seed)))
                print({k: v for k, v in records[-1].items() if k != "unknown"}, flush=True)
                write(args.out, records)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
