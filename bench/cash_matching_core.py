"""Benchmark the pure cash-application matcher on generated data (bench/cash_data.py): how many
statement lines it posts automatically, how many of those are right, and how long it takes. The
last line printed is one JSON object with the figures.

    python bench/cash_matching_core.py [--invoices 50000] [--lines 100000] [--seed 1]
        [--threshold 90] [--show-wrong 5] [--show-missed KIND:5] [--without-closed]
        [--default-gc]

Only `match_lines` is timed (the data is generated before the clock starts), inside
`tallybook.runtime.throughput_gc()` as bulk jobs run; it is given the open invoices and, unless
--without-closed, the invoices already paid. A wrong auto posting is an automatic proposal whose
allocations differ from the truth in any invoice or amount; `auto_matched_correct_pct` is
correct automatic proposals over matchable lines; `auto_unsure_right` counts automatic
proposals that are right on lines a clerk could not have been sure of.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from cash_data import KINDS, CashDataset, LineTruth, generate  # noqa: E402

from tallybook.core.cash_matching import (  # noqa: E402
    DEFAULT_THRESHOLD,
    IncomingLine,
    Proposal,
    match_lines,
)
from tallybook.runtime import throughput_gc  # noqa: E402


def log(message: str) -> None:
    print(message, flush=True)


def _allocations(items) -> tuple[tuple[str, int], ...]:
    return tuple(sorted((item.invoice_id, item.amount_minor) for item in items))


def _describe(data: CashDataset, line: IncomingLine, truth: LineTruth, proposal: Proposal) -> str:
    numbers = {invoice.id: invoice.number for invoice in data.invoices}

    def show(items) -> str:
        return ", ".join(f"{numbers[i.invoice_id]}={i.amount_minor}" for i in items) or "-"

    return (
        f"  {line.key} [{truth.kind}] {line.amount_minor} {line.currency} "
        f"payer={line.payer_name!r} account={line.payer_account!r}\n"
        f"    remittance={line.remittance_text!r} reference={line.creditor_reference!r} "
        f"documents={line.referred_documents!r}\n"
        f"    truth: {show(truth.allocations)} (matchable={truth.matchable}: {truth.note})\n"
        f"    proposal: {show(proposal.allocations)} confidence={proposal.confidence} "
        f"auto={proposal.auto} method={proposal.method}\n"
        + "".join(f"      - {reason}\n" for reason in proposal.reasons)
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--invoices", type=int, default=50_000)
    parser.add_argument("--lines", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--threshold", type=int, default=DEFAULT_THRESHOLD)
    parser.add_argument("--show-wrong", type=int, default=5, help="print this many wrong postings")
    parser.add_argument(
        "--default-gc",
        action="store_true",
        help="also time a run with Python's default garbage collector settings",
    )
    parser.add_argument(
        "--without-closed",
        action="store_true",
        help="do not tell the matcher which invoices are already paid",
    )
    parser.add_argument(
        "--show-missed", default=None, help="KIND:N prints N matchable lines of KIND not posted"
    )
    args = parser.parse_args()

    started = time.perf_counter()
    data = generate(args.seed, invoices=args.invoices, lines=args.lines)
    generated = time.perf_counter() - started
    log(
        f"generated {len(data.lines)} lines, {len(data.invoices)} open invoices, "
        f"{len(data.customers)} customers, {len(data.settled)} settled invoices "
        f"in {generated:.1f} s (seed {args.seed})"
    )
    if data.shortfall:
        log(f"kinds short of suitable invoices (built as unknown payers): {data.shortfall}")

    closed = () if args.without_closed else data.settled
    if args.default_gc:
        started = time.perf_counter()
        match_lines(data.lines, data.invoices, threshold=args.threshold, closed=closed)
        log(f"with Python's default garbage collector: {time.perf_counter() - started:.2f} s")
    # As a bulk job runs it (services use tallybook.runtime.throughput_gc the same way).
    with throughput_gc():
        started, cpu = time.perf_counter(), time.process_time()
        proposals = match_lines(data.lines, data.invoices, threshold=args.threshold, closed=closed)
        seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
    log(f"match_lines: {seconds:.2f} s ({cpu:.2f} s of CPU)")

    rows: dict[str, Counter[str]] = {kind: Counter() for kind in KINDS}
    wrong: list[str] = []
    missed: list[str] = []
    missed_kind, _, missed_count = (args.show_missed or "").partition(":")
    for line, truth, proposal in zip(data.lines, data.truth, proposals, strict=True):
        row = rows[truth.kind]
        row["lines"] += 1
        row["matchable"] += truth.matchable
        right = _allocations(proposal.allocations) == _allocations(truth.allocations)
        if proposal.auto:
            row["auto"] += 1
            if not right:
                row["wrong"] += 1
                if len(wrong) < args.show_wrong:
                    wrong.append(_describe(data, line, truth, proposal))
            elif truth.matchable:
                row["correct"] += 1
            else:
                row["lucky"] += 1
        else:
            row["review"] += 1
            if (
                truth.matchable
                and truth.kind == missed_kind
                and len(missed) < int(missed_count or 5)
            ):
                missed.append(_describe(data, line, truth, proposal))

    header = (
        f"{'kind':<20} {'lines':>7} {'matchable':>9} {'auto':>7} {'correct':>7} "
        f"{'wrong':>5} {'review':>7} {'correct %':>9}"
    )
    log(header)
    log("-" * len(header))
    total: Counter[str] = Counter()
    for kind, row in rows.items():
        total.update(row)
        share = f"{100 * row['correct'] / row['matchable']:.1f}" if row["matchable"] else "-"
        log(
            f"{kind:<20} {row['lines']:>7} {row['matchable']:>9} {row['auto']:>7} "
            f"{row['correct']:>7} {row['wrong']:>5} {row['review']:>7} {share:>9}"
        )
    log("-" * len(header))
    log(
        f"{'all':<20} {total['lines']:>7} {total['matchable']:>9} {total['auto']:>7} "
        f"{total['correct']:>7} {total['wrong']:>5} {total['review']:>7} "
        f"{100 * total['correct'] / max(1, total['matchable']):>9.1f}"
    )
    if total["lucky"]:
        log(f"auto postings on lines a clerk could not be sure of, right by luck: {total['lucky']}")
    for text in wrong:
        log("wrong auto posting:\n" + text)
    for text in missed:
        log("missed:\n" + text)
    lines = len(data.lines)
    log(
        json.dumps(
            {
                "lines": lines,
                "open_invoices": len(data.invoices),
                "seconds": round(seconds, 2),
                "cpu_seconds": round(cpu, 2),
                "auto_matched_pct": round(100 * total["auto"] / max(1, lines), 2),
                "auto_matched_correct_pct": round(
                    100 * total["correct"] / max(1, total["matchable"]), 2
                ),
                "wrong_auto_postings": total["wrong"],
                "matchable_lines": total["matchable"],
                "auto_unsure_right": total["lucky"],
                "seed": args.seed,
                "threshold": args.threshold,
                "closed_invoices_given": len(closed),
            }
        )
    )


if __name__ == "__main__":
    main()
