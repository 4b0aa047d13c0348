#!/usr/bin/env python3
"""Share of a callgrind profile's instructions spent on metrics (scripts/bench/metrics-overhead.sh).

`metrics_instructions.py BINARY MESSAGES CALLGRIND.OUT...`: for each profile (taken with
--dump-instr=yes --dump-line=no --compress-strings=no --compress-pos=no), every instruction
of BINARY is looked up with `addr2line -i`, which names the whole chain of functions inlined
at it; an instruction counts as metrics when a frame of that chain is in one of METRICS_FILES
(the counters are `#[inline]` relaxed atomics, so they live inside the data-path functions,
and only the inline chain tells them apart). Calls made from such instructions add their
inclusive cost (the category map's mutex, formatting while a scrape renders), unless the
callee is metrics code itself (counted already). Prints one Markdown row per profile:
instructions per delivered message in all, in metrics code, and the share."""

import collections
import subprocess
import sys

METRICS_FILES = (
    "crates/broker/src/stats.rs",
    "crates/portal/src/metrics.rs",
    "crates/portal/src/otlp.rs",
)


def parse(path):
    """(exclusive Ir by (object, address), [(object, call site, callee object, callee, Ir)])."""
    exclusive = collections.Counter()
    calls = []
    ob = cob = None
    call_target = None
    after_calls = False
    npos = 1
    for line in open(path, encoding="utf-8", errors="replace"):
        line = line.rstrip("\n")
        if line.startswith("positions:"):
            npos = len(line.split()[1:])
        elif line.startswith("ob="):
            ob = line[3:]
        elif line.startswith("cob="):
            cob = line[4:]
        elif line.startswith("calls="):
            parts = line[6:].split()
            call_target = int(parts[1], 16) if len(parts) > 1 and parts[1].startswith("0x") else None
            after_calls = True
        elif line.startswith("0x"):
            parts = line.split()
            addr = int(parts[0], 16)
            cost = int(parts[npos]) if len(parts) > npos else 0
            if after_calls:
                # The line after calls= is the call's inclusive cost at its call site.
                calls.append((ob, addr, cob or ob, call_target, cost))
                after_calls = False
                cob = None
            else:
                exclusive[(ob, addr)] += cost
    return exclusive, calls


def frames(binary, base, addresses):
    """For each runtime address, the set of source files in its inline chain."""
    out = {}
    addresses = sorted(addresses)
    chunk = 20000
    for i in range(0, len(addresses), chunk):
        part = addresses[i : i + chunk]
        text = subprocess.run(
            ["addr2line", "-e", binary, "-i", "-a"],
            input="\n".join(hex(a - base) for a in part),
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        current = None
        for row in text.splitlines():
            if row.startswith("0x"):
                current = int(row, 16) + base
                out[current] = set()
            elif current is not None:
                out[current].add(row.rsplit(":", 1)[0])
    return out


def is_metrics(files):
    return any(f.endswith(m) for f in files for m in METRICS_FILES)


def load_base(binary):
    """Valgrind maps a PIE executable at 0x108000, a fixed-address one where it says."""
    header = subprocess.run(["readelf", "-h", binary], capture_output=True, text=True).stdout
    return 0x108000 if "DYN" in header else 0


def main():
    binary, messages, profiles = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
    print("| profile | instructions / message | in metrics code / message | share |")
    print("|---|---|---|---|")
    for path in profiles:
        exclusive, calls = parse(path)
        total = sum(exclusive.values())
        name = binary.rsplit("/", 1)[-1]
        ours = lambda o: bool(o) and o.endswith("/" + name)
        mine = [k for k in exclusive if ours(k[0])]
        base = load_base(binary)
        call_sites = {a for (ob, a, _, _, _) in calls if ours(ob)}
        targets = {t for (_, _, cob, t, _) in calls if t and ours(cob)}
        chains = frames(binary, base, {a for (_, a) in mine} | call_sites | targets)
        metrics = sum(exclusive[k] for k in mine if is_metrics(chains.get(k[1], ())))
        for ob, addr, cob, target, cost in calls:
            if ours(ob) and addr in chains and is_metrics(chains[addr]):
                if target is not None and target in chains and is_metrics(chains[target]):
                    continue
                metrics += cost
        unresolved = sum(1 for k in mine if not chains.get(k[1]))
        print(
            f"| {path.rsplit('/', 1)[-1]} | {total / messages:,.0f} | {metrics / messages:,.1f} "
            f"| {metrics / total * 100:.3f} % |"
        )
        print(f"<!-- {path}: {total:,} Ir in all, {metrics:,} in metrics code, "
              f"{len(mine):,} instruction addresses in the binary, {unresolved:,} without line info -->")


if __name__ == "__main__":
    main()
