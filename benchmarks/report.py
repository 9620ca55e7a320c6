"""Generate benchmarks/RESULTS.md (and accuracy_vs_n.png) from results.json and speed.json.

    .venv/bin/python benchmarks/report.py

The figure of a cell is the SetFit paper's: accuracy x 100, but MCC x 100 for
amazon_counterfactual_en; mean +- standard deviation over the seeds run (sample std).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

from common import ALL_DATASETS, HERE, SETFIT_DATASETS, machine

REPORTED = (*ALL_DATASETS, "hwu64")  # the tables' datasets, in their order

METHODS = ("knn", "wknn", "logreg", "setfit", "setfit-default", "fewshot")
MCC_DATASETS = {"amazon_counterfactual_en"}
# SetFit paper (Tunstall et al. 2022), Table 2, as quoted in issue 3 (x 100; MCC for amazon).
PAPER_MINILM_8 = {"sst5": 29.8, "amazon_counterfactual_en": 19.7, "cr": 71.6, "emotion": 39.1,
                  "ag_news": 83.1}  # fmt: skip
PAPER_MPNET = {
    8: {"sst5": 43.6, "amazon_counterfactual_en": 40.3, "cr": 88.5, "emotion": 48.8,
        "enron_spam": 90.1, "ag_news": 82.9},
    64: {"sst5": 51.9, "amazon_counterfactual_en": 61.9, "cr": 90.4, "emotion": 76.2,
         "enron_spam": 96.1, "ag_news": 88.0},
}  # fmt: skip
FULL_GRID = (
    "nice -n 19 .venv/bin/python benchmarks/accuracy.py "
    f"--datasets {','.join(ALL_DATASETS)} --n 8,16,32,64 --seeds 0,1,2 "
    "--methods knn,wknn,logreg\n"
    "nice -n 19 .venv/bin/python benchmarks/accuracy.py --n 8 --seeds 0,1,2 "
    "--methods setfit,setfit-default,fewshot\n"
    "nice -n 19 .venv/bin/python benchmarks/accuracy.py --n 64 --seeds 0,1,2 "
    "--methods setfit,fewshot\n"
    "# on a GPU: prefix FEWSHOT_DEVICE=cuda and run one job per dataset/N/seed in parallel,\n"
    "# each with its own --cache-dir and --out, then merge the records\n"
    ".venv/bin/python benchmarks/report.py"
)
# Written by hand after reading the figures below; report.py keeps it with the tables.
NOTES = """\
**2026-12-04 (session 14): label names as training texts, on the final code** (fewshot/
code 88219534d3d7; section "The final code" below; the accuracy tables hold these cells,
and at N = 64 the cells not rerun are the older code's). Each trained label's name is one
more training text of its label (`train_label_names`, default on). N = 8, six SetFit-paper
datasets, seeds 0-2: fewshot minus plain setfit +1.00 points over the 18 support sets
(0.996; ahead in 10; it was -0.02 with the same pipeline and names off), +1.01 against the
names-off cells (emotion +4.7, enron_spam +1.4, sst5 +1.3, cr +0.5, ag_news +0.2,
amazon_counterfactual_en -2.0). hwu64 N = 8, seeds 0-2: fewshot 84.0 (84.4 with names off),
knn 79.6, plain setfit 78.8 (79.2, 78.2, 79.1: the first hwu64 setfit cells in
results.json; 849 to 880 CPU-seconds of training against fewshot's 108 to 115): fewshot
minus setfit +5.2, ahead on every seed. N = 64, seed
0, on the CPU: sst5, cr, amazon_counterfactual_en and emotion rerun, fewshot minus setfit
-0.4 (sst5 -0.2, cr -0.3, amazon -2.0, emotion +0.9; names off there: -1.0, -0.1, +0.0,
-0.7); ag_news and enron_spam were not run, so the other N = 64 cells are the older
code's. ECE of the served answers: 0.075 at N = 8 (18 cells), 0.049 at N = 64 (4), 0.029
on hwu64 (3). Blending the head with retrieval over the
fine-tuned encoder (the `rules` of each cell) never beat the head: see "Training recipe
levers".

**2026-12-02 (sessions 8 and 9): the gate that promotes unless clearly worse, and `loss
auto`, on the final code** (fewshot/ code 532509a994e3, commit 906fe15; section "The final
code" below; the accuracy tables hold these cells, and at N = 64 seeds 1-2 are the older
code's). N = 8, six SetFit-paper datasets, seeds 0-2: fewshot minus plain setfit -0.02
points over the 18 support sets (ahead in 9; sst5 +0.2, amazon_counterfactual_en +0.6 MCC,
cr +0.4, emotion +0.4, enron_spam -1.1, ag_news -0.7), plus knn +4.7; the gate promoted all
18 candidates and served the better of candidate and retrieval on the test set in 15 of 18
(the other three: enron_spam seeds 0-2, where retrieval was better by 2.6, 1.0 and 1.1
points). N = 64, seed 0, four datasets (ag_news and enron_spam not run: the CPU went to the
recipe lever): -0.4 (sst5 -1.0, amazon +0.0, cr -0.1, emotion -0.7). hwu64 N = 8, seeds 0-2
(`loss auto` trains it contrastive): fewshot 84.4, knn 79.6, logreg 79.6, wknn 72.9; plain
setfit 79.2 on seed 0 only, where fewshot scored 84.8 (seeds 1 and 2 take about two hours
each here under load; stopped). ECE of the served answers (top label, 10 bins): 0.120 at N =
8 (18 cells), 0.050 at N = 64 (4), 0.037 on hwu64 (3). The later merges (label priors,
session 9) change fewshot/'s fingerprint but not these paths: a workspace with no declared
label answers as before (the golden and migration tests).

**2026-12-02 (session 7): the contrastive recipe, measured with the pipeline.** Cells in
`benchmarks/experiments/final_n8.json` and `final_hwu64.json` (fewshot/ code 27cd27d708be,
`loss contrastive` then the default; not merged into the tables below, which are the pair
recipe's). At N = 8 on 15 support sets (cr, amazon_counterfactual_en, emotion, ag_news,
sst5 x seeds 0-2): fewshot minus plain setfit -3.0 points, plus knn +2.8; the candidate
beat knn on the test set in all 15, but the gate kept retrieval in 5 (each by one held-out
text or a tie); the candidates themselves are 1.85 points under plain setfit (the pair
recipe's were level), so `loss pairs` stays the default. hwu64 N = 8 seed 0: fewshot
(contrastive) 84.8, plain setfit 79.2, knn 79.7, logreg 80.2; training 112 against 695
CPU-seconds. SetFit answers' ECE 0.107 with the head's temperature, 0.178 without (16
cells); retrieval-served 0.098 (5 cells). A benchmark prior for retrieval's temperature
(fitted on sst2, trec6, subj, mr) did not carry over to the six SetFit-paper datasets (ECE
0.081 against 0.073 at N = 8) and was dropped.

Written by hand on 2026-11-26 (sessions 2 to 5) from the cells present then; the tables
below are generated. Reread this note against them after a rerun.

**Since commit 72903ec: the ranking tie-break (issue 4).** With 8 examples per label the
gate compares on 6 to 18 held-out examples, and a tie on accuracy kept retrieval. Now a tie
goes to the candidate when its encoder ranks the same held-out examples better (each one's
similarities to the rest's examples, own label against the others: a ROC AUC per text; an
equal ranking still keeps what serves, commit e5e6a70). Section "The ranking tie-break"
below: all 18 N = 8 support sets and 9 N = 64 ones (sst5, amazon_counterfactual_en and cr,
seeds 0-2), shared 2-core CPU, one thread a job.
- N = 8: promoted in 12 of 18 cells (held-out gate: 5 of 16); fewshot is 1.6 points under
  setfit (held-out gate: 3.6 on 16 cells; cross-validated gate: 3.3), 3.1 over knn, and
  1.8 over the held-out gate on the same 16 cells. The candidates themselves are level with
  setfit (-0.0 over 18). Of 7 ties, 6 went to the candidate by its ranking (emotion seed 2:
  47.3 against retrieval's 37.8 on the test set; ag_news seed 2: 85.7 against 78.4) and cr
  seed 0 kept retrieval on an equal ranking (1e-16 apart). 10 of the 12 promoted candidates
  beat retrieval on the test set (enron_spam seeds 1 and 2 were 1.0 and 1.1 points under it).
  What remains is the 6 refusals (cr seed 0, and five where the candidate was one to three
  held-out examples behind): in 5 of them the candidate was better on the test set
  (amazon_counterfactual_en seed 2 alone accounts for 1.0 of the 1.6 points: candidate
  29.5 MCC, retrieval 10.1, after 3 against 4 of 6); in 1 the gate was right
  (enron_spam seed 0: candidate 87.2, retrieval 89.8).
- N = 64 (7 more cells in session 5, `ranking_gate_n64_b.json`: ag_news seeds 0-2,
  emotion seeds 1-2, enron_spam seeds 0-1): promoted in 14 of 16 cells; fewshot minus
  setfit +0.2 over those 16 (sst5 -1.0, +0.7, +0.0; amazon_counterfactual_en +0.0, +1.2,
  +2.0 MCC; cr -0.1, -0.7, +0.4; ag_news +0.3, -0.8, +0.4; emotion +2.3, -1.1;
  enron_spam -0.3, -0.3), +0.1 with emotion seed 0 of the held-out gate (-0.7) over 17 of
  the 18 N = 64 support sets. The two refusals: enron_spam seed 1 (41 against 42 of 44
  held out; the gate was right, candidate 94.2 against retrieval's 95.2) and ag_news seed 1
  (71 against 73 of 88; wrong, candidate 87.0 against 86.4). Not run: enron_spam seed 2
  (an hour a cell here). The session-5 cells ran on fewshot/ of 55c1d0a (code
  5e8e83b5df5c) or 4aa218b (5ff6df5785e0: the same plus the status table's rendering,
  which no benchmark path calls).
- The gate's decisions against the test set (cells whose candidate and knn figures
  differ): at N = 8 it chose the better of candidate and retrieval in 11 of 18 support
  sets, where promoting every candidate would have chosen it in 15 (setfit itself beats
  knn in 16 of 18 at N = 8, by 4.8 points on average, worst -1.5); at N = 64 in 15 of 16,
  the same as promoting every candidate.
- Time (speed table, rerun on this code, each pair of runs alone on the CPU, same run): the
  pipeline's training over one plain setfit run is 0.99 (cr, 16 examples: 29.2 s against
  29.5 s), 1.05 (emotion, 48: 100.5 against 95.3) and 1.03 (cr, 128: 291.6 against 284.2).
  Where the rest goes (session 5, cProfile of `Workspace.train` on cr 16 examples, one
  thread): the 40 optimiser steps take 46.4 of its 47.4 s; loading, the gate's encodings
  and heads, and saving take the other 2%, within this machine's noise (about 10%).

**Since commit 17828c8: the held-out gate (issue 4).** The gate no longer trains three fold
models: it holds out one in three of each label's examples, trains the candidate on the rest
with their share of the step budget, compares it with retrieval on the held-out part, then
continues the same model on the held-out examples for the rest of the budget. Its cells
(section "The held-out gate" below; `benchmarks/experiments/held_out_gate*.json`) ran on the
shared 2-core CPU: 16 of the 18 N = 8 support sets (enron_spam seeds 1 and 2 were not run:
about 12 minutes a cell here) and one N = 64 cell, emotion seed 0, where the old gate's capped
fold models had kept retrieval. The main grid below is still the cross-validated gate's
(commit 001042b); its N = 64 fewshot cells were not rerun (about an hour a cell on this CPU).
- N = 64, emotion seed 0: the candidate scored 81 against retrieval's 66 of 132 held-out
  examples and was promoted; fewshot 65.8 against setfit's 66.5 (before: 49.4, retrieval).
- N = 8: promoted in 5 of 16 cells; fewshot is 3.6 points under setfit (before: 3.3 on 18
  cells; +0.2 against before on the same 16). The models it trains are at parity: the
  candidate's own test figure (recorded for the 5 promoted and 6 of the 11 rejected) is 0.3
  points under setfit on average. The gap is the gate's: it compares on 6 to 18 held-out
  examples; of its 11 refusals 6 were ties and 3 were one example apart. 5 of the 6 rejected
  candidates with a recorded figure beat retrieval on the test set (emotion seed 2: 47.3
  against 37.8; ag_news seed 2: 85.7 against 78.4, after 11 against 11 of 12 in the gate).
- Time (`benchmarks/speed.py --parts training --dataset D --n N`, each pair of runs alone
  on the CPU, same run; since replaced in the speed table by the runs above): the
  pipeline's training over one plain setfit run was 0.95 (cr, 16 examples), 1.09
  (emotion, 48) and 1.03 (cr, 128); about one setfit training, within a few percent either
  way (it was 3.1 with the cross-validated gate).

**Coverage and machines.** knn, wknn and logreg: all ten datasets, N = 8, 16, 32, 64, seeds
0-2, on the shared 2-core CPU. The fine-tuned methods (setfit, setfit-default, fewshot): the
six SetFit-paper datasets at N = 8 and 64 (setfit-default at N = 8 only), seeds 0-2. Seed 0
of setfit at N = 8, and of setfit-default on amazon_counterfactual_en and cr, ran on the CPU
in session 1; every other fine-tuned cell (all fewshot cells included) was computed on a lent
NVIDIA H100 (16 cores) with `FEWSHOT_DEVICE=cuda`, as parallel `accuracy.py` jobs (one per
dataset, N and seed, 12 at a time) over this repository at commit 001042b. The machine
changes accuracy only through floating-point differences; it changes training seconds a lot,
so those are only compared within one machine and one run. 22 fewshot cells were rerun later
on another H100 to record the gate's figures: each reproduced its accuracy exactly.

**fewshot vs the baselines.** Paired on the same support sets (18 per N): at N = 8, fewshot
is +1.5 points over knn, +2.9 over wknn, +1.3 over logreg, -2.0 under setfit-default and -3.3
under the paper-budget setfit (ahead of it on 1 dataset of 6); at N = 64, +10.7 over knn,
+14.4 over wknn, +10.1 over logreg and -0.9 under setfit (3 ahead, 3 behind: emotion -5.0,
ag_news -1.0, cr -0.6). So the pipeline is well ahead of every frozen-embedding method once it
fine-tunes, and not yet at the issue's bar of "at least as accurate as setfit".

**Why it trails setfit: the promotion gate (the cross-validated gate of 001042b).** Where the
gate promoted the SetFit candidate (6 of 18 cells at N = 8, 15 of 18 at N = 64), fewshot is
level with setfit: -0.4 and +0.2 points on average (the final model is trained with the paper's
budget: 40 pairs per example, one epoch). Every loss comes from the cells where the gate kept
retrieval, and there fewshot equals knn exactly: in 11 of those 12 N = 8 cells plain setfit
beat knn on the test set (by 0.3 to 17.6 points). The gate table below shows why it kept
retrieval. At N = 8 its cross-validated comparison is on 16 to 48 labeled examples and the two
sides differed by 0 to 3 examples (cr seed 1: 9 against 9 of 16; sst5 seed 2: 10 against 12 of
40): a tie keeps what serves, and a one-example difference is noise, not a measurement. At N =
64 the gate's three fold models are capped at `gate_max_steps` = 100 steps (about 6 pairs per
example on emotion's 256-example folds, against 40 for the final model): on emotion seed 0 they
scored 184 of 384, exactly retrieval's 184, while the fully trained model (setfit on the same
support set) reaches 66.5 on the test set against knn's 49.4. The gate therefore compares an
under-trained candidate (N = 64) or a coin flip (N = 8) with retrieval. One check of the N = 64
diagnosis (`benchmarks/experiments/gate_uncapped.json`: emotion, N = 64, seed 0,
`--fewshot-setting gate_max_steps=1000`, on the CPU): with fold models trained like the final
one the gate scored the candidate 233 against retrieval's 184 of 384, promoted it, and fewshot
reached 67.4 (setfit 66.5), at 68 minutes of training on the shared CPU. Fixing this needs a
decision on the gate (see issue 4's note), not more training.

**Our setfit vs the paper (MiniLM, N = 8).** ag_news 85.5 (paper 83.1), sst5 30.9 (29.8),
amazon_counterfactual_en 22.3 MCC (19.7), emotion 38.4 (39.1), cr 66.4 (71.6): each within
one seed spread of the paper's figure; cr is the widest gap (its seed 0 draw is hard: 55.9,
and the paper averages ten draws on the original test split).

**knn vs wknn (issue 2's check).** The retrieval stage beats plain similarity-weighted kNN
(k = 10, weights = cosine) on the same support sets at every N: +2.1 points at N = 8 (9 of
10 datasets; cr -0.2), +3.2 at 16, +4.1 at 32, +4.9 at 64 (10 of 10). Why: wknn looks at 10
neighbours whatever N is, and MiniLM's cosines sit in a narrow band, so its vote is close to
a majority count among 10; the retrieval stage puts 70% of its weight on the similarity to
each label's prototype (the mean of all its examples, which improves with every example).
Logistic regression on the same frozen embeddings is 0.5 to 1.0 point better than knn on
average (trec6 +5.7, amazon_counterfactual_en +4.6 MCC at N = 64).

**Time (the cross-validated gate of 001042b).** Same machine, same run: on the 2-core CPU the
pipeline's training of 16 cr examples took 3.1 times one plain setfit run (it trained four
models: three gate folds, then the one it kept; the speed table now holds the current
gate's figures). On the GPU the ratio is 7.5 to 12.3 at N = 8 (fixed costs dominate runs
of 5 to 15 s) and 1.3 to 2.4 at N = 64. The issue's "in at most setfit's training time" is
not met while the gate fine-tunes three extra models. Classification costs what the bare
encoder costs (cold one-text classify 0.97x, batch throughput 0.97x, peak memory 1.04x).
"""


def figure(record: dict[str, Any]) -> float:
    """The paper's metric of a record, x 100."""
    key = "mcc" if record["dataset"] in MCC_DATASETS else "accuracy"
    return 100.0 * float(record[key])


def group(records: list[dict[str, Any]]) -> dict[tuple[str, int, str], list[dict[str, Any]]]:
    cells: dict[tuple[str, int, str], list[dict[str, Any]]] = defaultdict(list)
    for r in records:
        cells[(r["dataset"], r["n_per_label"], r["method"])].append(r)
    return cells


def mean_spread(values: list[float]) -> str:
    if not values:
        return "-"
    mean = statistics.fmean(values)
    if len(values) < 2:
        return f"{mean:.1f} (1 seed)"
    return f"{mean:.1f} ± {statistics.stdev(values):.1f}"


def accuracy_tables(cells: dict[tuple[str, int, str], list[dict[str, Any]]]) -> list[str]:
    out = []
    datasets = [d for d in REPORTED if any(key[0] == d for key in cells)]
    for n in sorted({key[1] for key in cells}):
        methods = [m for m in METHODS if any(key[1:] == (n, m) for key in cells)]
        paper = n in PAPER_MPNET
        head = methods + (["paper MiniLM SetFit", "paper MPNet SetFit"] if paper else [])
        out += [f"### N = {n} per label", "", "| dataset | " + " | ".join(head) + " |"]
        out.append("|---" * (len(head) + 1) + "|")
        for d in datasets:
            row = [mean_spread([figure(r) for r in cells.get((d, n, m), [])]) for m in methods]
            if paper:
                minilm = PAPER_MINILM_8.get(d) if n == 8 else None
                row += [f"{minilm}" if minilm else "-", f"{PAPER_MPNET[n].get(d, '-')}"]
            name = f"{d} (MCC)" if d in MCC_DATASETS else d
            out.append(f"| {name} | " + " | ".join(row) + " |")
        out.append("")
    return out


def paired(
    cells: dict[tuple[str, int, str], list[dict[str, Any]]], d: str, n: int, a: str, b: str
) -> float | None:
    """Mean of (a - b) over the seeds both methods ran on (dataset d, N = n), or None."""
    first = {r["seed"]: figure(r) for r in cells.get((d, n, a), [])}
    second = {r["seed"]: figure(r) for r in cells.get((d, n, b), [])}
    seeds = sorted(set(first) & set(second))
    return statistics.fmean(first[s] - second[s] for s in seeds) if seeds else None


def comparison(cells: dict[tuple[str, int, str], list[dict[str, Any]]], target: str) -> list[str]:
    """Mean paired difference target - baseline (same support sets), per N."""
    out = [f"| N | baseline | datasets (seed pairs) | {target} - baseline (points, mean) | "
           "wins / losses (datasets) |", "|---|---|---|---|---|"]  # fmt: skip
    for n in sorted({key[1] for key in cells}):
        for base in METHODS:
            if base == target:
                continue
            diffs, pairs = [], 0
            for d in REPORTED:
                diff = paired(cells, d, n, target, base)
                if diff is not None:
                    diffs.append(diff)
                    seeds_a = {r["seed"] for r in cells[(d, n, target)]}
                    pairs += len(seeds_a & {r["seed"] for r in cells[(d, n, base)]})
            if not diffs:
                continue
            wins = sum(x > 0 for x in diffs)
            losses = sum(x < 0 for x in diffs)
            out.append(
                f"| {n} | {base} | {len(diffs)} ({pairs}) | {statistics.fmean(diffs):+.1f} | "
                f"{wins} / {losses} |"
            )
    return [*out, ""]


def per_dataset(cells: dict[tuple[str, int, str], list[dict[str, Any]]], target: str) -> list[str]:
    """Paired differences target - baseline per dataset and N (where the target ran)."""
    out = [f"| dataset | N | seeds | {target} | " + " | ".join(f"- {m}" for m in METHODS
           if m != target) + " |", "|---" * (len(METHODS) + 3) + "|"]  # fmt: skip
    for d in REPORTED:
        for n in sorted({key[1] for key in cells}):
            runs = cells.get((d, n, target))
            if not runs:
                continue
            diffs = [paired(cells, d, n, target, m) for m in METHODS if m != target]
            shown = ["-" if x is None else f"{x:+.1f}" for x in diffs]
            seeds = ",".join(str(r["seed"]) for r in sorted(runs, key=lambda r: r["seed"]))
            mean = statistics.fmean(figure(r) for r in runs)
            out.append(f"| {d} | {n} | {seeds} | {mean:.1f} | " + " | ".join(shown) + " |")
    return [*out, ""]


def device(record: dict[str, Any]) -> str:
    """``GPU`` or ``CPU``: where the record's training and prediction ran."""
    return "GPU" if "GPU" in str(record.get("machine", "")) else "CPU"


def cost_table(cells: dict[tuple[str, int, str], list[dict[str, Any]]]) -> list[str]:
    """Median training seconds and throughput, per method, N and machine (never mixed)."""
    out = ["| method | N | machine | cells | train seconds (median) | texts/s (median) |",
           "|---|---|---|---|---|---|"]  # fmt: skip
    for m in METHODS:
        for n in sorted({key[1] for key in cells}):
            rs = [r for key, group in cells.items() if key[1:] == (n, m) for r in group]
            for where in sorted({device(r) for r in rs}):
                here = [r for r in rs if device(r) == where]
                train = statistics.median(r["train_seconds"] for r in here)
                speed = statistics.median(r["texts_per_second"] or 0.0 for r in here)
                out.append(f"| {m} | {n} | {where} | {len(here)} | {train:.1f} | {speed:.0f} |")
    return [*out, ""]


def time_ratios(cells: dict[tuple[str, int, str], list[dict[str, Any]]]) -> list[str]:
    """fewshot / setfit training seconds on the same support set and the same machine."""
    out = [
        "| dataset | N | seeds (machine) | fewshot / setfit training time |",
        "|---|---|---|---|",
    ]
    for d in REPORTED:
        for n in sorted({key[1] for key in cells}):
            ours = {r["seed"]: r for r in cells.get((d, n, "fewshot"), [])}
            theirs = {r["seed"]: r for r in cells.get((d, n, "setfit"), [])}
            seeds = [s for s in sorted(set(ours) & set(theirs))
                     if ours[s]["machine"] == theirs[s]["machine"]]  # fmt: skip
            if not seeds:
                continue
            ratio = statistics.fmean(
                ours[s]["train_seconds"] / theirs[s]["train_seconds"] for s in seeds
            )
            where = device(ours[seeds[0]])
            out.append(f"| {d} | {n} | {','.join(map(str, seeds))} ({where}) | {ratio:.2f} |")
    return [*out, ""]


def gate_counts(
    record: dict[str, Any], against: str = "retrieval_held_out_accuracy"
) -> tuple[int, int, int]:
    """(candidate right, ``against`` right, examples compared) from a fewshot record's gate.

    ``against``: the held-out figure compared with, retrieval's or (``baseline_accuracy``)
    that of the stage that served.
    """
    gate = record["gate"]
    if "cv_accuracy" in gate:  # the cross-validated gate (before commit 17828c8): every example
        total = record["n_train"]
        return (
            round(gate["cv_accuracy"] * total),
            round(gate["retrieval_cv_accuracy"] * total),
            total,
        )
    total = gate["compared_on"]
    return (
        round(gate["held_out_accuracy"] * total),
        round(gate[against] * total),
        total,
    )


def candidate_figure(record: dict[str, Any]) -> float | None:
    """The test figure of the candidate a fewshot cell trained, served or not (None: unknown)."""
    if record["serving"] == "setfit":
        return figure(record)
    rejected = record.get("gate", {}).get("rejected_model")
    return None if rejected is None else figure({"dataset": record["dataset"], **rejected})


def seed_figure(
    cells: dict[tuple[str, int, str], list[dict[str, Any]]], d: str, n: int, m: str, seed: int
) -> float | None:
    """The figure of method m's cell for this support set, or None when it did not run."""
    return next((figure(x) for x in cells.get((d, n, m), []) if x["seed"] == seed), None)


def held_out_section(
    new: list[dict[str, Any]],
    cells: dict[tuple[str, int, str], list[dict[str, Any]]],
    before: dict[tuple[str, int, str], list[dict[str, Any]]] | None = None,
) -> list[str]:
    """fewshot with a newer gate, cell by cell, against the grid cells of its support set.

    'fewshot before' comes from ``before`` where given (an earlier experiment), else the grid.
    """
    out = ["| dataset | N | seed | gate: candidate / retrieval, correct of held-out n | serving "
           "| fewshot now | its candidate | fewshot before | setfit | knn | now - setfit |",
           "|---|---|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
    diffs: dict[tuple[int, str], list[float]] = defaultdict(list)
    promoted: dict[int, list[bool]] = defaultdict(list)
    better: dict[int, list[tuple[bool, bool]]] = defaultdict(list)  # (promoted, candidate won)
    order = sorted(
        new, key=lambda r: (r["n_per_label"], ALL_DATASETS.index(r["dataset"]), r["seed"])
    )
    for r in order:
        d, n, seed = r["dataset"], r["n_per_label"], r["seed"]
        earlier = cells if before is None else before
        other = {
            m: seed_figure(earlier if m == "fewshot" else cells, d, n, m, seed)
            for m in ("fewshot", "setfit", "knn")
        }
        cand, ret, n_compared = gate_counts(r)
        total = str(n_compared)
        ours, theirs = r["gate"].get("ranking_compared"), r["gate"].get("baseline_ranking")
        if ours is not None and theirs is not None:
            total += f"; ranking {ours:.3f} / {theirs:.3f}"
        candidate = candidate_figure(r)
        promoted[n].append(r["serving"] == "setfit")
        if candidate is not None and other["knn"] is not None and candidate != other["knn"]:
            better[n].append((r["serving"] == "setfit", candidate > other["knn"]))
        for m, v in other.items():
            if v is not None:
                diffs[(n, m)].append(figure(r) - v)
        if candidate is not None and other["setfit"] is not None:
            diffs[(n, "candidate")].append(candidate - other["setfit"])
        shown = ["-" if v is None else f"{v:.1f}" for v in other.values()]
        gap = "-" if other["setfit"] is None else f"{figure(r) - other['setfit']:+.1f}"
        mine = "-" if candidate is None else f"{candidate:.1f}"
        out.append(f"| {d} | {n} | {seed} | {cand} / {ret} of {total} | {r['serving']} | "
                   f"{figure(r):.1f} | {mine} | " + " | ".join(shown) + f" | {gap} |")  # fmt: skip
    out.append("")
    for n in sorted(promoted):
        parts = [
            f"{m.replace('fewshot', 'fewshot before')} {statistics.fmean(v):+.1f} ({len(v)} cells)"
            for (k, m), v in sorted(diffs.items())
            if k == n and v and m != "candidate"
        ]
        line = (
            f"- N = {n}: promoted in {sum(promoted[n])} of {len(promoted[n])} cells; "
            "fewshot now minus: " + ", ".join(parts)
        )
        if diffs.get((n, "candidate")):
            won = diffs[(n, "candidate")]
            line += f"; its candidate minus setfit: {statistics.fmean(won):+.1f} ({len(won)} cells)"
        if better[n]:
            right = sum(p == w for p, w in better[n])
            line += (
                f"; the gate chose the one better on the test set (candidate or retrieval, "
                f"i.e. knn) in {right} of {len(better[n])} cells, promoting every candidate "
                f"would have in {sum(w for _, w in better[n])}"
            )
        out.append(line + ".")
    out += ["", "'its candidate': the test figure of the model the gate measured and kept out "
            "(the benchmark serves it by a rollback and classifies again), or of the one it let "
            "in; '-' where the cell ran before the benchmark recorded it. 'Chose the one "
            "better on the test set' counts the cells with a recorded candidate whose "
            "figure differs from knn's."]  # fmt: skip
    return [*out, ""]


def gate_table(cells: dict[tuple[str, int, str], list[dict[str, Any]]]) -> list[str]:
    """What the promotion gate measured in each fewshot cell that recorded it."""
    out = ["| dataset | N | seed | gate: candidate / retrieval, correct of n (cross-validated) "
           "| serving | fewshot | setfit | knn |", "|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for d in REPORTED:
        for n in sorted({key[1] for key in cells}):
            for r in sorted(cells.get((d, n, "fewshot"), []), key=lambda r: r["seed"]):
                gate = r.get("gate")
                if not gate:
                    continue
                cand, ret, total = gate_counts(r)
                other = [seed_figure(cells, d, n, m, r["seed"]) for m in ("setfit", "knn")]
                shown = ["-" if v is None else f"{v:.1f}" for v in other]
                out.append(
                    f"| {d} | {n} | {r['seed']} | {cand} / {ret} of {total} | {r['serving']} | "
                    f"{figure(r):.1f} | " + " | ".join(shown) + " |"
                )
    return [*out, ""]


# The fewshot/ code (benchmarks/common.py package_fingerprint) of the cells the current
# notes describe: label names as training texts on the gate that promotes unless clearly
# worse, loss auto (session 14).
FINAL_CODE = "88219534d3d7"
SHAPES = {"six SetFit-paper datasets": SETFIT_DATASETS, "hwu64 (64 intents)": ("hwu64",)}


def final_rows(
    final: list[dict[str, Any]], cells: dict[tuple[str, int, str], list[dict[str, Any]]]
) -> list[str]:
    """One row per fewshot cell of the final code: the gate's figures against the test set."""
    out = ["| dataset | N | seed | gate: candidate / baseline right, of n | serving | fewshot "
           "| its candidate | setfit | knn | fewshot - setfit | ECE |",
           "|---|---|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for r in final:
        d, n, seed = r["dataset"], r["n_per_label"], r["seed"]
        cand, base, total = gate_counts(r, "baseline_accuracy")
        setfit, knn = (seed_figure(cells, d, n, m, seed) for m in ("setfit", "knn"))
        candidate = candidate_figure(r)
        shown = ["-" if v is None else f"{v:.1f}" for v in (candidate, setfit, knn)]
        gap = "-" if setfit is None else f"{figure(r) - setfit:+.1f}"
        ece = "-" if r.get("ece") is None else f"{r['ece']:.3f}"
        out.append(f"| {d} | {n} | {seed} | {cand} / {base} of {total} | {r['serving']} | "
                   f"{figure(r):.1f} | " + " | ".join(shown) + f" | {gap} | {ece} |")  # fmt: skip
    return [*out, ""]


def gaps(
    rows: list[dict[str, Any]], cells: dict[tuple[str, int, str], list[dict[str, Any]]], m: str
) -> list[float]:
    """fewshot minus method m on each row's support set, where m's cell exists."""
    out = []
    for r in rows:
        other = seed_figure(cells, r["dataset"], r["n_per_label"], m, r["seed"])
        if other is not None:
            out.append(figure(r) - other)
    return out


def final_summary(
    final: list[dict[str, Any]], cells: dict[tuple[str, int, str], list[dict[str, Any]]]
) -> list[str]:
    """Per shape and N: fewshot minus setfit and knn, the gate's choices, ECE per stage."""
    out = []
    for shape, datasets in SHAPES.items():
        for n in sorted({r["n_per_label"] for r in final}):
            mine = [r for r in final if r["dataset"] in datasets and r["n_per_label"] == n]
            if not mine:
                continue
            parts = []
            for m in ("setfit", "knn"):
                diffs = gaps(mine, cells, m)
                if diffs:
                    wins = sum(x > 0 for x in diffs)
                    parts.append(f"minus {m} {statistics.fmean(diffs):+.2f} points "
                                 f"({len(diffs)} support sets, ahead in {wins})")  # fmt: skip
            by_set = []
            for d in datasets:
                diffs = gaps([r for r in mine if r["dataset"] == d], cells, "setfit")
                if diffs:
                    by_set.append(f"{d} {statistics.fmean(diffs):+.1f}")
            chose = []
            for r in mine:
                candidate = candidate_figure(r)
                knn = seed_figure(cells, r["dataset"], n, "knn", r["seed"])
                if candidate is not None and knn is not None and candidate != knn:
                    chose.append((r["serving"] == "setfit") == (candidate > knn))
            promoted = sum(r["serving"] == "setfit" for r in mine)
            eces = defaultdict(list)
            for r in mine:
                if r.get("ece") is not None:
                    eces[r["serving"]].append(r["ece"])
            ece = ", ".join(f"{k} {statistics.fmean(v):.3f} ({len(v)})" for k, v in eces.items())
            out.append(
                f"- **{shape}, N = {n}:** fewshot " + "; ".join(parts)
                + (f". Per dataset, minus setfit: {', '.join(by_set)}" if len(by_set) > 1 else "")
                + f". The gate promoted the candidate in {promoted} of {len(mine)}; it served "
                f"the one better on the test set (candidate or retrieval, i.e. knn) in "
                f"{sum(chose)} of {len(chose)} where they differ. ECE of the served answers "
                f"by serving stage (cells): {ece or '-'}."
            )  # fmt: skip
    return [*out, ""]


def final_section(records: list[dict[str, Any]]) -> list[str]:
    """The fewshot cells of :data:`FINAL_CODE`, against the other methods' cells."""
    cells = group(records)
    final = sorted(
        (r for r in records if r["method"] == "fewshot" and r.get("code") == FINAL_CODE),
        key=lambda r: (r["n_per_label"], REPORTED.index(r["dataset"]), r["seed"]),
    )
    if not final:
        return []
    return [
        f"## The final code: fewshot (fewshot/ code {FINAL_CODE}) against setfit and retrieval",
        "",
        "Every fewshot cell of this code, with the gate's held-out counts (the candidate's "
        "and the serving stage's, right of n compared), the test figure of the candidate it "
        "measured (served, or served by a rollback when kept out), and the expected "
        "calibration error of the answers served (top label, 10 bins).",
        "",
        *final_summary(final, cells),
        *final_rows(final, cells),
    ]


def expected_cells() -> set[tuple[str, int, int, str]]:
    """The grid of issue 3 (six datasets, N = 8 and 64, 3 seeds, every method)."""
    cells = set()
    for d in SETFIT_DATASETS:
        for n in (8, 64):
            for seed in (0, 1, 2):
                for m in METHODS:
                    if m == "setfit-default" and n != 8:
                        continue
                    if m == "setfit" and n == 64 and seed != 0:
                        continue
                    cells.add((d, n, seed, m))
    return cells


def missing(records: list[dict[str, Any]]) -> list[str]:
    have = {(r["dataset"], r["n_per_label"], r["seed"], r["method"]) for r in records}
    lost = sorted(expected_cells() - have)
    if not lost:
        return ["None: every cell of issue 3's grid is present.", ""]
    by: dict[tuple[str, int], dict[str, list[str]]] = defaultdict(lambda: defaultdict(list))
    for d, n, seed, m in lost:
        by[(m, n)][d].append(str(seed))
    lines = [f"{len(lost)} cells of issue 3's grid (six datasets, N = 8 and 64) are missing:", ""]
    for (m, n), datasets in sorted(by.items(), key=lambda kv: (METHODS.index(kv[0][0]), kv[0][1])):
        listed = "; ".join(f"{d} (seed {', '.join(s)})" for d, s in datasets.items())
        lines.append(f"- `{m}` N={n}: {listed}")
    return [*lines, ""]


def plot(cells: dict[tuple[str, int, str], list[dict[str, Any]]], path: Path) -> bool:
    try:
        import matplotlib
    except ImportError:
        return False
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    datasets = [d for d in ALL_DATASETS if any(key[0] == d for key in cells)]
    cols = 4
    rows = (len(datasets) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(4 * cols, 3.2 * rows), squeeze=False)
    for ax, d in zip(axes.flat, datasets):
        for m in METHODS:
            ns = sorted(n for (dd, n, mm) in cells if dd == d and mm == m)
            if not ns:
                continue
            values = [[figure(r) for r in cells[(d, n, m)]] for n in ns]
            means = [statistics.fmean(v) for v in values]
            errs = [statistics.stdev(v) if len(v) > 1 else 0.0 for v in values]
            color = f"C{METHODS.index(m)}"  # the same colour for a method in every panel
            ax.errorbar(ns, means, yerr=errs, marker="o", capsize=3, label=m, color=color)
        ax.set_xscale("log", base=2)
        ax.set_title(f"{d} ({'MCC' if d in MCC_DATASETS else 'accuracy'} x 100)")
        ax.set_xlabel("examples per label (N)")
    for ax in list(axes.flat)[len(datasets) :]:
        ax.axis("off")
    legend: dict[str, Any] = {}
    for ax in axes.flat:  # one legend for every method, whichever panel drew it
        for handle, label in zip(*ax.get_legend_handles_labels()):
            legend.setdefault(label, handle)
    fig.legend(legend.values(), legend.keys(), loc="lower right", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return True


def speed_section(path: Path) -> list[str]:
    if not path.exists():
        return ["Not measured yet: run `.venv/bin/python benchmarks/speed.py`.", ""]
    data = json.loads(path.read_text(encoding="utf-8"))
    out = [f"Measured by `benchmarks/speed.py` on {data.get('machine', '?')} (last run "
           f"{data.get('when', '?')}); each row's two sides ran in the same run; "
           "ratio = fewshot / baseline.", "",
           "| what | fewshot | baseline | ratio |", "|---|---|---|---|"]  # fmt: skip
    for row in data["rows"]:
        cpu = ""
        if "cpu_ratio" in row:  # CPU seconds: the work, whatever else loads the machine
            cpu = (f"; CPU {row['fewshot_cpu_s']:.3g} s vs {row['baseline_cpu_s']:.3g} s, "
                   f"ratio {row['cpu_ratio']:.2f}")  # fmt: skip
        out.append(
            f"| {row['what']} | {row['fewshot']:.3g} {row['unit']} | "
            f"{row['baseline']:.3g} {row['unit']} ({row['baseline_name']}) | "
            f"{row['ratio']:.2f}{cpu} |"
        )
    return [*out, "", *(f"- {note}" for note in data.get("notes", [])), ""]


def calibration_section(path: Path) -> list[str]:
    """The SetFit head's temperature rules (benchmarks/calibration_setfit.py), if measured."""
    if not path.exists():
        return []
    data = json.loads(path.read_text(encoding="utf-8"))
    keys = list(data["means"])
    lines = ["## Calibration of a serving SetFit model", "",
             "`benchmarks/calibration_setfit.py` "
             "(`benchmarks/experiments/calibration_setfit.json`): each support set is trained "
             "by the pipeline; the gate's held-out answers and the served head's raw test "
             "scores are captured, and every rule picks a temperature "
             "from the held-out answers alone (the answers never change). LODO: a rule's "
             "constant is fitted on the other datasets' test sets only. Mean ECE (top label, 10 "
             "bins) of the served answers:", "",
             "| rule | " + " | ".join(keys) + " |", "|---|" + "---|" * len(keys)]  # fmt: skip
    for rule in data["rules"]:
        lines.append(
            f"| {rule} | " + " | ".join(f"{data['means'][k][rule]:.3f}" for k in keys) + " |"
        )
    return [*lines, ""]


def open_set_section(path: Path) -> list[str]:
    """Issue 16's figures: the open-set benchmark, its SetFit check, the label priors."""
    if not path.exists():
        return []
    import label_priors
    import open_set
    import open_set_setfit

    def read(file: Path) -> list[dict[str, Any]]:
        return json.loads(file.read_text(encoding="utf-8")) if file.exists() else []

    lines = ["## Open set: refusing texts of unknown labels (abstention)", "", open_set.PROTOCOL,
             "", *open_set.section(read(path))]  # fmt: skip
    if checked := read(HERE / "open_set_setfit.json"):
        lines += ["### With a SetFit model answering", "", open_set_setfit.NOTE, "",
                  *open_set_setfit.section(checked), ""]  # fmt: skip
    if priors := read(HERE / "label_priors.json"):
        lines += ["## Labels before examples: label priors", "",
                  label_priors.NOTE, "", *label_priors.section(priors), ""]  # fmt: skip
    return lines


def render(
    records: list[dict[str, Any]],
    speed: Path,
    picture: str | None,
    held_out: list[dict[str, Any]] | None = None,
    ranked: list[dict[str, Any]] | None = None,
) -> str:
    cells = group(records)
    machines = sorted({r.get("machine", "?") for r in records})
    lines = [
        "# Benchmark results",
        "",
        "Generated by `benchmarks/report.py` from `benchmarks/results.json`; do not edit by hand.",
        f"Regenerate with `.venv/bin/python benchmarks/report.py` (or `make bench` for a small "
        f"grid). Machine: {', '.join(machines) or machine()}. Generated "
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}. Encoder: all-MiniLM-L6-v2 for "
        "every method.",
        "",
        "Protocol (SetFit paper): for each dataset, N and seed, N examples per label are drawn "
        "from train with that seed (the same support set for every method), and the full test "
        "split (at most 2,000 rows) is classified. Figures: accuracy x 100 (MCC x 100 for "
        "amazon_counterfactual_en, as in the paper), mean ± sample std over seeds. The paper "
        "used the original test splits and its own seeds, so its columns are a reference, not "
        "a paired comparison.",
        "",
        "Full grid (hours of CPU; resumes from benchmarks/.cache/):",
        "",
        "```",
        FULL_GRID,
        "```",
        "",
    ]
    if NOTES.strip():
        lines += ["## Reading the results", "", NOTES.strip(), ""]
    lines += final_section(records)
    lines += ["## Accuracy", "", *accuracy_tables(cells)]
    if picture:
        lines += [f"![accuracy against N]({picture})", ""]
    lines += ["## knn (retrieval stage) vs wknn (plain weighted kNN, issue 2) and logreg", ""]
    lines += ["Paired on the same support sets (same dataset, N and seed).", ""]
    frozen = {k: v for k, v in cells.items() if k[2] in ("knn", "wknn", "logreg")}
    lines += comparison(frozen, "knn")
    lines += ["## fewshot (automatic pipeline) vs each baseline", ""]
    lines += ["Paired on the same support sets (same dataset, N and seed).", ""]
    lines += [*comparison(cells, "fewshot"), *per_dataset(cells, "fewshot")]
    lines += ["## The promotion gate's decisions", ""]
    lines += ["Recorded by the fewshot cells that were (re)run with gate figures (the rerun "
              "reproduced each cell's accuracy exactly).", "", *gate_table(cells)]  # fmt: skip
    if ranked:
        lines += ["## The ranking tie-break (commit 72903ec)", ""]
        lines += ["A tie on held-out accuracy now goes to the candidate when its encoder ranks "
                  "the same held-out examples better (mean ROC AUC of each held-out text's "
                  "similarities to the rest's examples, its own label against the others). Its "
                  "cells (`benchmarks/experiments/ranking_gate*.json`, shared 2-core CPU, one "
                  "thread a job) against the grid and, as 'before', the held-out gate's cells "
                  "below:", "",
                  *held_out_section(ranked, cells, group(held_out or []))]  # fmt: skip
    if held_out:
        lines += ["## The held-out gate (commit 17828c8)", ""]
        lines += ["The gate now holds out one in three of each label's examples, trains the "
                  "candidate on the rest and continues it on them (no extra models). Its cells "
                  "(`benchmarks/experiments/held_out_gate*.json`, computed on the shared 2-core "
                  "CPU) against the grid's cells of the same support sets ('before': the "
                  "cross-validated gate of commit 001042b):", "",
                  *held_out_section(held_out, cells)]  # fmt: skip
    lines += ["## Training time and throughput", ""]
    lines += ["Seconds from different machines are never pooled: the GPU cells ran 12 to 22 "
              "jobs at once on one GPU, the CPU cells one at a time on a shared 2-core machine.",
              "", *cost_table(cells)]  # fmt: skip
    lines += ["fewshot's training time over plain setfit's, on the same support set, the same "
              "machine and in the same run:", "", *time_ratios(cells)]  # fmt: skip
    lines += ["## Speed", "", *speed_section(speed)]
    lines += calibration_section(HERE / "experiments" / "calibration_setfit.json")
    lines += open_set_section(HERE / "open_set.json")
    levers = speed.parent / "training_levers.md"
    if levers.exists():  # the training recipe's levers against plain setfit (its own note)
        body = levers.read_text(encoding="utf-8").split("\n", 1)[1]
        lines += ["## Training recipe levers", "", body.strip(), ""]
    lines += ["## Missing cells", "", *missing(records)]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--results", type=Path, default=HERE / "results.json")
    parser.add_argument("--speed", type=Path, default=HERE / "speed.json")
    parser.add_argument("--out", type=Path, default=HERE / "RESULTS.md")
    args = parser.parse_args()
    records = json.loads(args.results.read_text(encoding="utf-8"))
    held_out, ranked = (
        [
            r
            for path in sorted((HERE / "experiments").glob(pattern))
            for r in json.loads(path.read_text(encoding="utf-8"))
        ]
        for pattern in ("held_out_gate*.json", "ranking_gate*.json")
    )
    picture = args.out.parent / "accuracy_vs_n.png"
    drawn = plot(group(records), picture)
    args.out.write_text(
        render(records, args.speed, picture.name if drawn else None, held_out, ranked) + "\n"
    )
    print(f"wrote {args.out}" + (f" and {picture}" if drawn else ""))


if __name__ == "__main__":
    main()
