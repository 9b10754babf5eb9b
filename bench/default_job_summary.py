"""Summarises the default job over seeds: dml's runs against PyTorch's JSON lines
(bench/pytorch_train_fashion.py), Recall@1 and MAP@R on the test split before and after training,
as mean ± standard deviation over seeds and the difference of the means with its standard error.

Usage: python default_job_summary.py DML_RUN_DIR... -- NAME=PYTORCH_JSONL...
"""
import json
import math
import sys
from pathlib import Path


def pick(evaluation):
    return evaluation["recall_at_k"]["1"], evaluation["map_at_r"]


def dml_run(run_dir):
    evals = [json.loads(l) for l in open(Path(run_dir) / "metrics.jsonl") if '"split"' in l]
    return pick(evals[0]), pick(evals[-1])


def pytorch_runs(path):
    return [(pick(d["before"]), pick(d["after"])) for d in map(json.loads, open(path))]


def mean_sd(values):
    m = sum(values) / len(values)
    sd = math.sqrt(sum((v - m) ** 2 for v in values) / (len(values) - 1)) if len(values) > 1 else 0.0
    return m, sd


def main(argv):
    split = argv.index("--")
    groups = {"dml": [dml_run(d) for d in argv[:split]]}
    for item in argv[split + 1:]:
        name, path = item.split("=", 1)
        groups[name] = pytorch_runs(path)
    columns = [("R@1 before", 0, 0), ("MAP@R before", 0, 1), ("R@1 after", 1, 0), ("MAP@R after", 1, 1)]
    print("| runs | seeds | " + " | ".join(c[0] for c in columns) + " |")
    print("|---|---|" + "---|" * len(columns))
    stats = {}
    for name, runs in groups.items():
        cells = []
        for label, when, metric in columns:
            m, sd = mean_sd([r[when][metric] for r in runs])
            stats[name, label] = (m, sd, len(runs))
            cells.append(f"{m:.4f} ± {sd:.4f}")
        print(f"| {name} | {len(runs)} | " + " | ".join(cells) + " |")
    for name in list(groups)[1:]:
        parts = []
        for label, _, _ in columns:
            (m1, s1, n1), (m2, s2, n2) = stats["dml", label], stats[name, label]
            parts.append(f"{label} {m1 - m2:+.4f} (s.e. {math.sqrt(s1 ** 2 / n1 + s2 ** 2 / n2):.4f})")
        print(f"dml − {name}: " + ", ".join(parts))


if __name__ == "__main__":
    main(sys.argv[1:])
