"""Read a process's ``/metrics`` page into plain numbers (for the demo and the tests)."""
from __future__ import annotations

import urllib.request

from prometheus_client.parser import text_string_to_metric_families


def scrape(url: str, timeout: float = 2.0) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """{(sample name, sorted labels): value} for every sample on the page."""
    with urllib.request.urlopen(url, timeout=timeout) as response:
        text = response.read().decode("utf-8")
    out: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def total(samples: dict, name: str, **labels: str) -> float:
    """Sum of every sample called ``name`` whose labels include ``labels``."""
    want = set(labels.items())
    return sum(v for (n, lab), v in samples.items() if n == name and want <= set(lab))


class MetricsHistory:
    """Scrapes of one ``/metrics`` page over time (``streamrec_*`` samples only), for reports.

    At most ``max_points`` scrapes are kept: beyond that every other one is dropped, so a long
    ``--hold`` keeps the whole run at a coarser resolution in bounded memory.
    """

    def __init__(self, prefix: str = "streamrec_", max_points: int = 2_000) -> None:
        self.prefix = prefix
        self.max_points = max_points
        self.times: list[float] = []
        self.samples: list[dict] = []

    def add(self, at: float, samples: dict) -> None:
        self.times.append(at)
        self.samples.append({key: v for key, v in samples.items() if key[0].startswith(self.prefix)})
        if len(self.times) > self.max_points:
            del self.times[1:-1:2]
            del self.samples[1:-1:2]

    def series(self, name: str, **labels: str) -> tuple[list[float], list[float]]:
        """(times, summed values) of the samples called ``name`` whose labels include ``labels``."""
        want = set(labels.items())
        times: list[float] = []
        values: list[float] = []
        for at, samples in zip(self.times, self.samples):
            matching = [v for (n, lab), v in samples.items() if n == name and want <= set(lab)]
            if matching:
                times.append(at)
                values.append(sum(matching))
        return times, values

    def by_label(self, name: str, *label_names: str, **labels: str) -> dict[str, tuple[list[float], list[float]]]:
        """One series per combination of ``label_names`` (joined with '/'), e.g. strategy weights over time."""
        want = set(labels.items())
        out: dict[str, tuple[list[float], list[float]]] = {}
        for at, samples in zip(self.times, self.samples):
            for (n, lab), v in samples.items():
                if n != name or not want <= set(lab):
                    continue
                named = dict(lab)
                key = "/".join(named.get(label, "") for label in label_names)
                times, values = out.setdefault(key, ([], []))
                times.append(at)
                values.append(v)
        return out
