"""Runs the Autobahn test-suite cases (kosoku, pinned) against a WebSocket URL and
compares each case's outcome with a checked-in baseline.

    python scripts/autobahn.py URL BASELINE [--update] [--parallelism N]

A case fails the run when it does worse than its baseline: a worse `behavior` or
`behavior_close` verdict, or a different close code where the baseline holds one
of the codes the gateway owes (1002 protocol error, 1007 invalid data, 1009 too
large), or when it is missing from the baseline. A case that does better is
reported (update the baseline with --update to keep the gain). Exit 0: no case worse.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import sys
import time

import kosoku

# Verdicts from best to worst (Autobahn's labels).
RANK = {"OK": 0, "NON-STRICT": 1, "INFORMATIONAL": 1, "UNIMPLEMENTED": 2,
        "WRONG CODE": 3, "UNCLEAN": 3, "FAILED BY CLIENT": 3, "FAILED": 4, "ERROR": 5}
# The close codes the gateway owes by the protocol: kept exactly.
OWED_CODES = {1002, 1007, 1009}


def outcome(result) -> dict:
    return {
        "behavior": result.behavior.value,
        "behavior_close": result.behavior_close.value,
        "close_code": result.remote_close_code,
        "clean": bool(result.was_clean),
    }


def category(case_id: str, o: dict) -> str:
    """Why a case ends as it does (docs/conformance.md explains each)."""
    group = ".".join(case_id.split(".")[:2])
    code = o["close_code"]
    if case_id.split(".")[0] in ("12", "13"):
        return "compression"  # no permessage-deflate: the offer is declined
    if group == "7.7":
        return "conformant"  # the client's close code, echoed
    if code == 1009:
        return "too_large"
    if code == 1007:
        return "invalid_utf8"
    if code == 1002:
        return "protocol_violation"
    if code == 1008:
        return "no_hello"  # waits for an echo; the gateway waits for `hello`
    if o["behavior"] == "FAILED":
        return "not_echo"  # the reply is an `error` frame, not an echo
    return "conformant"


def worse(actual: dict, expected: dict) -> list[str]:
    why = []
    for key in ("behavior", "behavior_close"):
        if RANK[actual[key]] > RANK[expected[key]]:
            why.append(f"{key} {expected[key]} -> {actual[key]}")
    if expected["close_code"] in OWED_CODES and actual["close_code"] != expected["close_code"]:
        why.append(f"close code {expected['close_code']} -> {actual['close_code']}")
    if expected["clean"] and not actual["clean"]:
        why.append("the close was clean, now it is not")
    return why


def better(actual: dict, expected: dict) -> bool:
    return any(RANK[actual[k]] < RANK[expected[k]] for k in ("behavior", "behavior_close")) or (
        actual["clean"] and not expected["clean"])


def write_baseline(path: str, baseline: dict) -> None:
    """The baseline with one case a line, so a diff shows which cases changed."""
    head = {k: v for k, v in baseline.items() if k != "cases"}
    lines = [json.dumps(head, indent=1)[:-2] + ',\n "cases": {']
    cases = list(baseline["cases"].items())
    for i, (case_id, o) in enumerate(cases):
        comma = "," if i + 1 < len(cases) else ""
        lines.append(f"  {json.dumps(case_id)}: {json.dumps(o)}{comma}")
    lines.append(" }\n}\n")
    with open(path, "w") as f:
        f.write("\n".join(lines))


async def run(url: str, parallelism: int) -> dict[str, dict]:
    try:
        results = await kosoku.run_fuzzingclient(url, None, None, concurrency=parallelism)
    except kosoku.FailureError as failure:  # some case did not pass: expected here
        results = failure.results
    return {r.case_id: outcome(r) for r in results}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("url")
    parser.add_argument("baseline")
    parser.add_argument("--update", action="store_true", help="write the outcomes as the new baseline")
    parser.add_argument("--parallelism", type=int, default=4)
    parser.add_argument("--results", help="also write this run's outcomes to this file")
    parser.add_argument("--replay", metavar="RESULTS",
                        help="compare the outcomes saved by --results instead of running the cases")
    args = parser.parse_args()

    started = time.monotonic()
    if args.replay:
        with open(args.replay) as f:
            actual = json.load(f)
    else:
        actual = asyncio.run(run(args.url, args.parallelism))
    elapsed = time.monotonic() - started
    counts = collections.Counter(
        (o["behavior"], o["behavior_close"], o["close_code"]) for o in actual.values())
    print(f"kosoku: {len(actual)} cases in {elapsed:.0f} s")
    for (behavior, close, code), n in sorted(counts.items(), key=lambda kv: -kv[1]):
        print(f"  {n:4d}  behavior {behavior:<13} close {close:<13} code {code}")
    if args.results:
        with open(args.results, "w") as f:
            json.dump(actual, f, indent=1, sort_keys=True)

    with open(args.baseline) as f:
        baseline = json.load(f)
    if args.update:
        cases = {}
        for case_id, o in actual.items():
            cases[case_id] = dict(o, category=category(case_id, o))
        baseline["cases"] = dict(sorted(cases.items(), key=lambda kv: [int(p) for p in kv[0].split(".")]))
        write_baseline(args.baseline, baseline)
        print(f"wrote {len(cases)} cases to {args.baseline}")
        for name, n in collections.Counter(c["category"] for c in cases.values()).most_common():
            print(f"  {n:4d}  {name}")
        return 0

    expected = baseline["cases"]
    failures, gains = [], []
    for case_id, o in actual.items():
        if case_id not in expected:
            failures.append(f"{case_id}: not in the baseline ({o})")
            continue
        why = worse(o, expected[case_id])
        if why:
            failures.append(f"{case_id} ({expected[case_id].get('category')}): " + "; ".join(why))
        elif better(o, expected[case_id]):
            gains.append(case_id)
    missing = sorted(set(expected) - set(actual))
    if missing:
        failures.append(f"cases in the baseline that did not run: {', '.join(missing)}")
    if gains:
        print(f"better than the baseline ({len(gains)}; --update keeps it): {', '.join(gains)}")
    if failures:
        print(f"{len(failures)} cases worse than the baseline:", file=sys.stderr)
        for line in failures:
            print("  " + line, file=sys.stderr)
        return 1
    print(f"every case as good as its baseline ({len(expected)} cases)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
