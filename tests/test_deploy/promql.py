"""Where the deployment's PromQL lives, and how the tests turn it into queries a Prometheus can run.

- Dashboards: every ``targets[].expr`` of every panel (rows included) of ``deploy/grafana/dashboards``;
  Grafana's variables become concrete windows (:data:`GRAFANA_VARIABLES`).
- Rules: recording rules as they are; an alert's ``expr`` follows the convention stated in
  ``deploy/prometheus/rules.yml`` - clauses ``<expression> <comparison> <number>`` joined by ``and``
  (or ``or``/``unless``) - and :func:`alert_clauses` returns each clause's ``<expression>``, which must
  return data even while the alert is quiet.
"""
from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
DASHBOARD_DIR = DEPLOY / "grafana" / "dashboards"
DATASOURCES_FILE = DEPLOY / "grafana" / "provisioning" / "datasources" / "prometheus.yml"
PROMETHEUS_CONFIG = DEPLOY / "prometheus" / "prometheus.yml"
RULES_FILE = DEPLOY / "prometheus" / "rules.yml"

#: Grafana's built-in variables, as concrete windows for a Prometheus that scrapes every second.
GRAFANA_VARIABLES = {"__rate_interval": "30s", "__interval": "5s", "__range": "5m", "__range_s": "300"}


def dashboards() -> dict[str, dict]:
    return {path.name: json.loads(path.read_text()) for path in sorted(DASHBOARD_DIR.glob("*.json"))}


def iter_panels(panels: list[dict]) -> Iterator[dict]:
    for panel in panels:
        yield panel
        yield from iter_panels(panel.get("panels", []))


def dashboard_queries() -> list[tuple[str, str, str]]:
    """(dashboard file, panel title, expr) for every query of every panel."""
    out = []
    for name, board in dashboards().items():
        for panel in iter_panels(board.get("panels", [])):
            for target in panel.get("targets", []):
                out.append((name, panel.get("title", ""), target.get("expr", "")))
    return out


def concrete(expr: str) -> str:
    """``expr`` with Grafana's ``$__rate_interval`` / ``${__rate_interval}`` (and friends) replaced."""
    def sub(match: re.Match) -> str:
        name = match.group(1) or match.group(2)
        if name not in GRAFANA_VARIABLES:
            raise ValueError(f"unknown Grafana variable ${name} in {expr!r}")
        return GRAFANA_VARIABLES[name]

    return re.sub(r"\$\{(\w+)\}|\$(\w+)", sub, expr)


_NUMBER = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"
_COMPARISON = re.compile(rf"^(?P<lhs>.*?)\s*(?:==|!=|>=|<=|>|<)\s*(?:bool\s+)?{_NUMBER}\s*$", re.DOTALL)


def _split_top_level(expr: str, words: tuple[str, ...] = ("and", "or", "unless")) -> list[str]:
    """Split at binary set operators outside any (), [], {} or string."""
    parts, depth, quote, start, i = [], 0, None, 0, 0
    while i < len(expr):
        ch = expr[i]
        if quote:
            if ch == "\\":
                i += 1
            elif ch == quote:
                quote = None
        elif ch in "\"'`":
            quote = ch
        elif ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
        elif depth == 0 and ch.isspace():
            for word in words:
                m = re.match(rf"\s+{word}(?:\s+(?:on|ignoring)\s*\([^)]*\))?\s+", expr[i:])
                if m:
                    parts.append(expr[start:i])
                    i += m.end()
                    start = i
                    break
            else:
                i += 1
                continue
            continue
        i += 1
    parts.append(expr[start:])
    return [part.strip() for part in parts if part.strip()]


def alert_clauses(expr: str) -> list[str]:
    """The threshold-free expressions of an alert's ``expr``; raises if it breaks the convention."""
    out = []
    for clause in _split_top_level(" ".join(expr.split())):
        m = _COMPARISON.match(clause)
        if not m:
            raise ValueError(f"alert clause {clause!r} is not '<expression> <comparison> <number>'")
        out.append(m.group("lhs"))
    return out


def provisioned_datasource_uids() -> set[str]:
    """The ``uid:`` values of the datasource provisioning file (a flat list; no YAML parser needed)."""
    return set(re.findall(r"^\s*uid:\s*['\"]?([\w.-]+)['\"]?\s*$", DATASOURCES_FILE.read_text(), re.MULTILINE))


def metric_names(expr: str) -> set[str]:
    """Metric names an expression reads (``streamrec_*``, ``process_*``, ``up``)."""
    names = set(re.findall(r"\b((?:streamrec|process)_[a-zA-Z0-9_]+)\b", expr))
    if re.search(r"\bup\b\s*\{", expr) or re.search(r"\(\s*up\s*\)", expr):
        names.add("up")
    return names
