"""Off-policy evaluation of the tuner's bandit policies on the Open Bandit Dataset sample (issue 4).

The tuner's decisions are river bandit policies behind :class:`online.tuning.ArmPolicy`.
Here each policy is the one a campaign would run over its items (80 in ``all``,
34 in ``men``): it learns from the logged impressions with bandit feedback
(``update_served``: only the logged item's click is seen) and is evaluated on
the same log *prequentially*: the probabilities ``pi_t`` used for row ``t``
depend only on rows before ``t`` (refreshed every ``--refresh`` rows, as a
deployed policy would be), which keeps the estimators unbiased row by row.

Estimators (item-level; the position of the impression is ignored, ``pi`` is the
same for every position):

- IPS:  mean_t  r_t * pi_t(a_t) / p_t
- SNIPS: IPS normalised by mean_t pi_t(a_t) / p_t
- DR:   mean_t  sum_a pi_t(a) q_t(a) + pi_t(a_t) / p_t * (r_t - q_t(a_t)), with
  ``q_t(a)`` the smoothed click rate of item ``a`` on rows before ``t``.

``p_t`` is the logged propensity (``propensity_score``). The logged policies'
own CTR (on-policy: the mean click of their log) is printed beside them: the
``random`` log is the ground truth for Random, the ``bts`` log for Bernoulli
Thompson Sampling. ± is 1.96 standard errors of the per-row terms.

    python benchmarks/obd.py                     # both campaigns, both logs, four policies (~1 min)

Data: Open Bandit Dataset, © ZOZO, Inc., released under CC BY 4.0
(https://creativecommons.org/licenses/by/4.0/). Y. Saito, S. Aihara, M. Matsutani,
Y. Narita, "Open Bandit Dataset and Pipeline: Towards Realistic and Reproducible
Off-Policy Evaluation", arXiv:2008.07146 (2020); NeurIPS 2021 Datasets and
Benchmarks Track. Source: https://github.com/st-tech/zr-obp (obd/). Changes: none.
Read in place from ``../shared/data/obd/``; never copied.
"""
from __future__ import annotations

import argparse
import csv
import json
import math
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from online.tuning import POLICIES, ArmPolicy, TunerConfig  # noqa: E402

DATA = ROOT.parent / "shared/data/obd"


def load_log(path: Path) -> list[tuple[str, int, float]]:
    """``(item, click, propensity)`` per impression, in time order."""
    rows = []
    with path.open(newline="") as handle:
        reader = csv.reader(handle)
        header = next(reader)
        item, click, prop = header.index("item_id"), header.index("click"), header.index("propensity_score")
        for row in reader:
            rows.append((row[item], int(row[click]), float(row[prop])))
    return rows


def _mean_ci(terms: list[float]) -> tuple[float, float]:
    n = len(terms)
    mean = sum(terms) / n
    var = sum((x - mean) ** 2 for x in terms) / max(n - 1, 1)
    return mean, 1.96 * math.sqrt(var / n)


def evaluate(log: list[tuple[str, int, float]], items: list[str], policy: str | None, refresh: int,
             seed: int = 0) -> dict[str, Any]:
    """IPS / SNIPS / DR of one policy (``None``: uniform random) learned prequentially on ``log``."""
    bandit = ArmPolicy(policy, items, explore=TunerConfig().explore, seed=seed) if policy else None
    clicks = dict.fromkeys(items, 0.0)
    shown = dict.fromkeys(items, 0.0)
    prior = 0.005  # q_t starts from a typical CTR (10 pseudo-impressions); no peeking at the log
    ips, weights, dr = [], [], []
    probs = {item: 1.0 / len(items) for item in items}
    for t, (item, click, propensity) in enumerate(log):
        if bandit is not None and t % refresh == 0:
            probs = bandit.probabilities()
        q = {a: (clicks[a] + prior * 10) / (shown[a] + 10) for a in items}
        w = probs[item] / propensity
        ips.append(click * w)
        weights.append(w)
        dr.append(sum(probs[a] * q[a] for a in items) + w * (click - q[item]))
        clicks[item] += click
        shown[item] += 1
        if bandit is not None:
            bandit.update_served(item, float(click))
    ips_mean, ips_ci = _mean_ci(ips)
    dr_mean, dr_ci = _mean_ci(dr)
    snips = sum(ips) / sum(weights) if sum(weights) else 0.0
    return {"policy": policy or "uniform", "ips": ips_mean, "ips_ci": ips_ci, "snips": snips, "dr": dr_mean,
            "dr_ci": dr_ci, "rows": len(log)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--campaigns", default="all,men")
    parser.add_argument("--policies", default=",".join(POLICIES))
    parser.add_argument("--refresh", type=int, default=100, help="rows between two updates of pi")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    if not args.data.is_dir():
        print(f"Open Bandit Dataset not found at {args.data}: nothing to do (it is read in place, never copied)")
        return 0
    report: dict[str, Any] = {"campaigns": {}}
    for campaign in args.campaigns.split(","):
        logs = {name: load_log(args.data / name / campaign / f"{campaign}.csv") for name in ("random", "bts")}
        items = sorted({item for log in logs.values() for item, _, _ in log}, key=int)
        print(f"\ncampaign {campaign}: {len(items)} items; logged CTR (on-policy ground truth): "
              + ", ".join(f"{name} {sum(c for _, c, _ in log) / len(log):.4f} ({sum(c for _, c, _ in log)} clicks "
                          f"/ {len(log):,})" for name, log in logs.items()))
        entry: dict[str, Any] = {"items": len(items),
                                 "logged_ctr": {name: sum(c for _, c, _ in log) / len(log) for name, log in logs.items()},
                                 "estimates": {}}
        print(f"  {'policy':10} {'log':6} {'IPS':>16} {'SNIPS':>8} {'DR':>16}")
        for name, log in logs.items():
            for policy in [None, *args.policies.split(",")]:
                result = evaluate(log, items, policy, args.refresh)
                entry["estimates"].setdefault(name, []).append(result)
                print(f"  {result['policy']:10} {name:6} {result['ips']:.4f} ± {result['ips_ci']:.4f} "
                      f"{result['snips']:8.4f} {result['dr']:.4f} ± {result['dr_ci']:.4f}")
        report["campaigns"][campaign] = entry
    if args.json is not None:
        args.json.write_text(json.dumps(report, indent=1) + "\n")
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
