"""What a change to the list's hot path is worth, with the machine's noise cancelled: variants in turn, in one process.

``benchmarks/list_building.py --baseline-ref`` runs each checkout in a process of its own, one after the other.
On the shared 2-vCPU VM a whole run can be 1.5-2x slower than the one before it, so a round's ratio of a 10-20%
change spread over x0.65-x0.85 on 2026-12-03. Here every variant is a worker's
:class:`~stream.worker.processor.EventProcessor` in this one process, and each micro-batch is handed to each of
them in turn (rotating who goes first): a slow second falls on all of them alike. Variants:

- ``this``: this checkout;
- ``module@REF`` (``--baseline-ref REF``): this checkout's Python with REF's compiled loops
  (``online/_fixed_mix.pyx`` built into a temporary folder). The Python callers must call the module as REF's
  did (the same functions and arguments), which holds for the changes it was written for;
- ``... without item strings`` (``--item-strings``): the engine keeps each event's own string for its item instead
  of the first one it saw (``StreamingRecommender._learn_users``; a benchmark-only switch through that private
  table). That adds one Python call per event (~0.1 us) to the variant without.

Each variant learns the first half of a generated stream with push off, then serves the second half with push on,
micro-batch by micro-batch. Prints CPU per event, the ratio to the first variant over the whole run and by tenths
of it (paired), and whether every variant built the same lists.

    python benchmarks/interleaved_lists.py --baseline-ref 30c3096 --item-strings
"""
from __future__ import annotations

import argparse
import importlib
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from online import compiled  # noqa: E402
from stream.cli.datasets import generate  # noqa: E402
from stream.settings import Settings  # noqa: E402
from stream.wire import schema  # noqa: E402
from stream.wire.messages import RawMessage  # noqa: E402
from stream.worker.processor import EventProcessor  # noqa: E402


class _FirstStringOff(dict):
    """A table of item strings that keeps none: each event's own string is used (the engine before)."""

    def setdefault(self, key, default=None):
        return default


def build_module(ref: str, into: Path):
    """REF's ``online/_fixed_mix.pyx``, compiled in ``into`` as ``_fixed_mix_baseline``."""
    source = subprocess.run(["git", "-C", str(ROOT), "show", f"{ref}:online/_fixed_mix.pyx"], check=True,
                            capture_output=True, text=True).stdout
    (into / "_fixed_mix_baseline.pyx").write_text(source)
    (into / "setup.py").write_text(
        "from setuptools import Extension, setup\nfrom Cython.Build import cythonize\n"
        "setup(ext_modules=cythonize([Extension('_fixed_mix_baseline', ['_fixed_mix_baseline.pyx'], "
        "extra_compile_args=['-O2', '-ffp-contract=off'])], language_level=3))\n")
    subprocess.run([sys.executable, "setup.py", "build_ext", "--inplace"], cwd=into, check=True,
                   capture_output=True)
    sys.path.insert(0, str(into))
    return importlib.import_module("_fixed_mix_baseline")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--baseline-ref", help="also run this checkout with REF's compiled loops")
    parser.add_argument("--item-strings", action="store_true",
                        help="also run each module without one string per item")
    parser.add_argument("--engine", default="fixed", help="'fixed' (the default fixed mix) or a blend spec such as "
                        "'default' (the learned blend)")
    parser.add_argument("--events", type=int, default=80_000, help="half learned first, half served")
    parser.add_argument("--users", type=int, default=20_000)
    parser.add_argument("--items", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=2)
    parser.add_argument("--per-message", type=int, default=200)
    parser.add_argument("--messages-per-batch", type=int, default=1)
    args = parser.parse_args()
    if compiled.fixed_mix is None:
        print("online._fixed_mix is not built: nothing to compare (pip install -e .)")
        return 1
    with tempfile.TemporaryDirectory(prefix="streamrec-module-") as temp:
        modules = {"this": compiled.fixed_mix}
        if args.baseline_ref:
            modules = {f"module@{args.baseline_ref}": build_module(args.baseline_ref, Path(temp)), **modules}
        variants = {}
        for name, module in modules.items():
            if args.item_strings:
                variants[f"{name} without item strings"] = (module, False)
            variants[name] = (module, True)
        return run(args, variants)


def run(args: argparse.Namespace, variants: dict) -> int:
    events = generate(args.events, n_users=args.users, n_items=args.items, seed=args.seed)
    per, step = args.per_message, args.messages_per_batch
    messages = [RawMessage(schema.encode([schema.event_payload(e) for e in events[i:i + per]]), None, "events", 0,
                           n, 1.0) for n, i in enumerate(range(0, len(events), per))]
    print(f"# {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {os.cpu_count()} CPUs, engine {args.engine}, {args.events:,} events "
          f"({args.users:,} users, {args.items:,} items), {per} events/message, {step} message(s)/batch")
    blend = {} if args.engine == "fixed" else {"blend": args.engine}
    processors = {}
    for name, (_module, strings) in variants.items():
        processor = EventProcessor(Settings.of(push=False, **blend), clock=lambda: 1_700_000_000.0)
        if not strings:
            processor.engine.engine._names = _FirstStringOff()
        processors[name] = processor
    half = len(messages) // 2
    for name, processor in processors.items():
        compiled.fixed_mix = variants[name][0]
        for start in range(0, half, step):
            processor.process_events(messages[start:start + step])
        processor.settings = Settings.of(push=True, **blend)
    names = list(processors)
    cpu: dict[str, list[float]] = {name: [] for name in names}
    differ = 0
    for turn, start in enumerate(range(half, len(messages), step)):
        batch, lists = messages[start:start + step], {}
        for name in names[turn % len(names):] + names[:turn % len(names)]:
            compiled.fixed_mix = variants[name][0]
            began = time.process_time()
            result = processors[name].process_events(batch)
            cpu[name].append(time.process_time() - began)
            lists[name] = [schema.decode_recommendation(out.value)["items"] for out in result.recommendations]
        differ += len({repr(value) for value in lists.values()}) > 1
    served = (len(messages) - half) * per
    first = names[0]
    tenth = max(1, len(cpu[first]) // 10)
    for name in names:
        total = sum(cpu[name])
        line = f"{name:<40} {1e6 * total / served:6.1f} µs/event"
        if name != first:
            paired = sorted(sum(cpu[name][i:i + tenth]) / sum(cpu[first][i:i + tenth])
                            for i in range(0, len(cpu[first]) - tenth + 1, tenth))
            line += (f"  ×{total / sum(cpu[first]):.3f} of {first}; by tenths median ×{statistics.median(paired):.3f}"
                     f" (×{paired[0]:.3f}-×{paired[-1]:.3f})")
        print(line)
    print("the same lists from every variant" if not differ else f"LISTS DIFFER in {differ} micro-batches")
    return 1 if differ else 0


if __name__ == "__main__":
    sys.exit(main())
