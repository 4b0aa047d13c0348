#!/usr/bin/env python3
"""Share of a callgrind profile's instructions spent on metrics (scripts/bench/metrics-overhead.sh).

`metrics_instructions.py BINARY MESSAGES CALLGRIND.OUT...`: for each profile (taken with
--dump-instr=yes --dump-line=no --compress-strings=no --compress-pos=no), every instruction
of BINARY is looked up with `addr2line -i`, which names the whole chain of functions inlined
at it; an instruction counts as metrics when a frame of that chain is in one of METRICS_FILES
(the counters are `#[inline]` relaxed atomics, so they live inside the data-path functions,
and only the inline chain tells them apart). Calls made from such instructions add their
inclusive cost (the category map's mutex, formatting while a scrape renders), unless the
callee is metrics code itself (counted already). Reading the queue gauges for the
maxQueuedBytes bound (`Stats::queued_bytes*`, in stats.rs too) is reported apart: it is the
backpressure decision, not metrics. Counter instructions with an x86 `lock` prefix (atomic
read-modify-write, far dearer than an ordinary instruction) are counted too. Prints one
Markdown row per profile, per delivered message."""

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
    """For each runtime address, its inline chain: (function, source file) pairs."""
    out = {}
    addresses = sorted(addresses)
    chunk = 20000
    for i in range(0, len(addresses), chunk):
        part = addresses[i : i + chunk]
        text = subprocess.run(
            ["addr2line", "-e", binary, "-i", "-a", "-f", "-C"],
            input="\n".join(hex(a - base) for a in part),
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        current, function = None, None
        for row in text.splitlines():
            if row.startswith("0x") and function is None:
                current = int(row, 16) + base
                out[current] = []
            elif function is None:
                function = row
            else:
                out[current].append((function, row.rsplit(":", 1)[0]))
                function = None
    return out


def lock_prefixed(binary, base, address):
    """The instruction at `address` is an atomic read-modify-write (x86 `lock` prefix)."""
    text = subprocess.run(
        ["objdump", "-d", "--no-show-raw-insn", f"--start-address={hex(address - base)}",
         f"--stop-address={hex(address - base + 1)}", binary],
        capture_output=True,
        text=True,
    ).stdout
    at = hex(address - base)[2:] + ":"
    # objdump shows the prefix alone when the range ends inside the instruction.
    return any(row.strip().startswith(at) and "\tlock" in row for row in text.splitlines())


def category(chain):
    """`counter` (metrics code), `bound` (reading the queue gauges for the memory bound,
    which lives beside the counters but is not metrics), or None."""
    for function, file in chain:
        if any(file.endswith(m) for m in METRICS_FILES):
            return "bound" if "queued_bytes" in function else "counter"
    return None


def load_base(binary, addresses):
    """Where the profile's addresses of BINARY start: valgrind reports a position-independent
    executable's at its link addresses or shifted by its load address (0x108000), depending
    on the version; the candidate under which more addresses have line info wins."""
    sample = sorted(addresses)[:: max(1, len(addresses) // 200)]

    def resolved(base):
        text = subprocess.run(
            ["addr2line", "-e", binary],
            input="\n".join(hex(max(a - base, 0)) for a in sample),
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        return sum(1 for row in text.splitlines() if not row.startswith("??"))

    return max((0, 0x108000), key=resolved)


def main():
    binary, messages, profiles = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
    name = binary.rsplit("/", 1)[-1]

    def ours(o):
        return bool(o) and o.endswith("/" + name)

    print("| profile | instructions / message | metrics counters / message | share | atomic RMW in them / message | queue-bound reads / message |")
    print("|---|---|---|---|---|---|")
    for path in profiles:
        exclusive, calls = parse(path)
        total = sum(exclusive.values())
        mine = [k for k in exclusive if ours(k[0])]
        base = load_base(binary, [a for (_, a) in mine])
        call_sites = {a for (ob, a, _, _, _) in calls if ours(ob)}
        targets = {t for (_, _, cob, t, _) in calls if t and ours(cob)}
        chains = frames(binary, base, {a for (_, a) in mine} | call_sites | targets)
        cost = collections.Counter()
        rmw = 0
        for k in mine:
            c = category(chains.get(k[1], ()))
            if c:
                cost[c] += exclusive[k]
                if c == "counter" and exclusive[k] * 100 >= messages and lock_prefixed(binary, base, k[1]):
                    rmw += exclusive[k]
        for ob, addr, cob, target, ir in calls:
            c = category(chains.get(addr, ())) if ours(ob) else None
            if c and not (target is not None and category(chains.get(target, ()))):
                cost[c] += ir
        print(
            f"| {path.rsplit('/', 1)[-1]} | {total / messages:,.0f} | {cost['counter'] / messages:,.1f} "
            f"| {cost['counter'] / total * 100:.3f} % | {rmw / messages:.1f} | {cost['bound'] / messages:,.1f} |"
        )
        print(f"<!-- {path}: {total:,} Ir in all, {cost['counter']:,} in counters, {cost['bound']:,} in bound reads, "
              f"{len(mine):,} instruction addresses in the binary -->")


if __name__ == "__main__":
    main()
