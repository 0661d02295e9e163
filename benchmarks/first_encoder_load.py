"""What a process's first encoder load costs the event loop that serves lists, with and without
``EncoderLoader.prepare`` beforehand (the worker prepares while it joins its group).

Each run is a fresh Python process, as a worker is: an asyncio loop ticks every millisecond while the
first load runs in a thread, as ``stream.worker.encoder_handover`` runs it. A tick that comes late is a
stretch in which the loader held the interpreter lock, so a list being built would have waited as long.
Printed per variant: the load's wall time, the longest late tick and the sum of ticks over 20 ms late,
over the import plus the load ("cold": what a worker without preparation pays when its first version
arrives) or over the load alone after ``prepare`` ("prepared"). Variants alternate; ``--runs`` pairs.

    python benchmarks/first_encoder_load.py --runs 3
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

CHILD = r"""
import asyncio, json, sys, tempfile, time
sys.path.insert(0, sys.argv[1])
prepared = sys.argv[2] == "prepared"
with tempfile.TemporaryDirectory() as directory:
    # the checkpoint is written by another process, as the trainer writes it
    import subprocess
    subprocess.run([sys.executable, "-c", (
        "import sys; sys.path.insert(0, sys.argv[1]);"
        "from models.checkpoint import checkpoint_path, save_checkpoint;"
        "from models.config import EncoderConfig; from models.encoder import SequenceEncoder;"
        "c = EncoderConfig.small(n_items=5000);"
        "save_checkpoint(checkpoint_path(sys.argv[2], 1), state_dict=SequenceEncoder(c).state_dict(), config=c,"
        " items=[f'i{n}' for n in range(5000)], version=1)"), sys.argv[1], directory], check=True)
    path = f"{directory}/encoder-v00000001.pt"

    def new_loader():
        from models import EncoderLoader
        loader = EncoderLoader(cache_mb=16)
        if prepared:
            loader.prepare()
        return loader

    async def tick(lags, stop):
        while not stop.is_set():
            began = time.perf_counter()
            await asyncio.sleep(0.001)
            lags.append(time.perf_counter() - began - 0.001)

    async def main():
        loader = await asyncio.to_thread(new_loader) if prepared else None  # while the group is joined
        lags, stop = [], asyncio.Event()
        ticker = asyncio.create_task(tick(lags, stop))
        began = time.perf_counter()
        if loader is None:
            loader = await asyncio.to_thread(new_loader)
        result = await asyncio.to_thread(loader.load_if_newer, path, 1)
        wall = time.perf_counter() - began
        stop.set()
        await ticker
        assert result.loaded, result.reason
        late = [lag for lag in lags if lag > 0.020]
        print(json.dumps({"wall_s": wall, "max_late_ms": 1000 * max(lags), "late_over_20ms_ms": 1000 * sum(late)}))

    asyncio.run(main())
"""


def run(variant: str) -> dict:
    out = subprocess.run([sys.executable, "-c", CHILD, str(ROOT), variant], capture_output=True, text=True,
                         check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3, help="pairs of (cold, prepared) processes, alternating")
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    results: dict[str, list[dict]] = {"cold": [], "prepared": []}
    for n in range(args.runs):
        for variant in results:
            results[variant].append(run(variant))
            print(f"run {n + 1} {variant:<9} {results[variant][-1]}", flush=True)
    print(f"\n{'variant':<10} {'wall s':>8} {'longest late tick ms':>21} {'ticks > 20 ms late, ms':>23}   (median of "
          f"{args.runs})")
    for variant, rows in results.items():
        print(f"{variant:<10} {statistics.median(r['wall_s'] for r in rows):>8.2f} "
              f"{statistics.median(r['max_late_ms'] for r in rows):>21.1f} "
              f"{statistics.median(r['late_over_20ms_ms'] for r in rows):>23.1f}")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
