"""x86 paging (PAE and non-PAE): random virtual reads, ours vs Volatility 3's x86 layers.

    python3 benchmarks/bench_paging_x86.py [--pages 3000] [--reads 100000] [--repeat 5]

Forges (pykd_ext.forge.pagetables, in mode X86_PAE / X86_NONPAE) one 32-bit address space per mode with `--pages` 4 KiB
kernel pages at random frames, then measures, median of `--repeat` rounds:
- our `X86AddressSpace.read(va, 4)` per second, caches dropped before each round (cold) and warm;
- translations (`translate`, a fresh space per round) per second;
- Volatility 3's `WindowsIntel`/`WindowsIntelPAE` `read(va, 4)` over the same bytes (first 20,000
  addresses), and the ratio. Prints; never asserts.
"""
import argparse
import os
import random
import statistics
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tests", "x86"))

from x86world import new_space, volatility_layer  # noqa: E402

from pykd_ext.memory.paged import X86AddressSpace  # noqa: E402


def _bench(pae: bool, pages: int, reads: int, repeat: int) -> None:
    phys, pt, _ = new_space(pae, memory_map=((0x1, 0x9E), (0x100, pages * 2 + 0x2000)))
    base = 0x90000000
    for i in range(pages):
        pt.map_new(base + i * 0x1000, i.to_bytes(4, "little"))
    rng = random.Random(7)
    vas = [base + rng.randrange(pages) * 0x1000 + rng.randrange(0, 0x1000, 4) for _ in range(reads)]
    ours = X86AddressSpace(phys, pt.dtb, pae)
    cold, warm, walks = [], [], []
    for _ in range(repeat):
        ours.drop_caches()
        t = time.perf_counter()
        for va in vas:
            ours.read(va, 4)
        cold.append(reads / (time.perf_counter() - t))
        t = time.perf_counter()
        for va in vas:
            ours.read(va, 4)
        warm.append(reads / (time.perf_counter() - t))
        fresh = X86AddressSpace(phys, pt.dtb, pae)
        sample = vas[:20000]
        t = time.perf_counter()
        for va in sample:
            fresh.translate(va)
        walks.append(len(sample) / (time.perf_counter() - t))
    vol = volatility_layer(phys, pt.dtb, pae)
    sample = vas[:20000]
    vol_rates = []
    for _ in range(max(1, repeat // 2)):
        t = time.perf_counter()
        for va in sample:
            vol.read(va, 4)
        vol_rates.append(len(sample) / (time.perf_counter() - t))
    mode = "PAE" if pae else "non-PAE"
    print("%-8s ours cold %10.0f reads/s   warm %10.0f reads/s   walks %9.0f /s   "
          "Volatility %9.0f reads/s   ratio (ours cold / Volatility) %.1fx"
          % (mode, statistics.median(cold), statistics.median(warm), statistics.median(walks),
             statistics.median(vol_rates), statistics.median(cold) / statistics.median(vol_rates)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pages", type=int, default=3000)
    parser.add_argument("--reads", type=int, default=100000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    for pae in (True, False):
        _bench(pae, args.pages, args.reads, args.repeat)


if __name__ == "__main__":
    main()
