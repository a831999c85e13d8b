#!/usr/bin/env python3
"""Writes docs/conformance.md from the results of pgssl's conformance suites.

Usage (from anywhere; paths default to this repository):

    cargo test --test conformance     # and --test tls client_tls::; each suite writes its results
    python3 scripts/conformance-report.py [--results DIR] [--output FILE]

    --results DIR   the directory whose *.jsonl files are read (default: target/conformance)
    --output FILE   the Markdown file written (default: docs/conformance.md)

Every suite's test truncates its own file in target/conformance/ when it starts and appends
one JSON object per case, on one line:

    {"suite": "negotiation matrix", "case": "ssl=on ssluser allow postgres libpq18",
     "counterpart": "ssluser disable allow postgres",
     "postgresql": "connect, authfail, reconnect, sslaccept, authok -> ssl",
     "pgssl": "connect, authfail, reconnect, sslaccept, authok -> ssl",
     "match": true, "difference": null}

    suite        the suite's name; the report has one section per suite
    case         the case, as the test names it
    counterpart  the case of PostgreSQL's own tests it is modelled on ("" if none)
    postgresql   what PostgreSQL (or libpq) does: the reference
    pgssl        what pgssl does
    match        whether the two agree
    difference   null, or, for a case that does not match on purpose, the reason (a
                 deliberate, documented difference)

Whatever subset of suites has results is reported (files in name order; sections in the
order their suites first appear). The report has per-suite and overall counts (cases,
matching, deliberate differences, other differences), the list of deliberate differences with
their reasons, and a table per suite (case, PostgreSQL's result, pgssl's result, match). A
malformed line is an error naming its file and line. Exit status: 0 when the report is
written, 1 on bad input or when there are no results at all.
"""

import argparse
import json
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FIELDS = ("suite", "case", "counterpart", "postgresql", "pgssl", "match", "difference")


def fail(message):
    print(f"conformance-report: {message}", file=sys.stderr)
    sys.exit(1)


def load(results_dir):
    """Returns ({suite: [record, ...]} in first-appearance order, [file names read])."""
    files = sorted(results_dir.glob("*.jsonl"))
    suites = {}
    seen = set()
    for path in files:
        with path.open(encoding="utf-8") as fh:
            for number, line in enumerate(fh, 1):
                if not line.strip():
                    continue
                where = f"{path}:{number}"
                try:
                    record = json.loads(line)
                except json.JSONDecodeError as e:
                    fail(f"{where}: not JSON: {e}")
                if not isinstance(record, dict):
                    fail(f"{where}: not a JSON object")
                missing = [f for f in FIELDS if f not in record]
                if missing:
                    fail(f"{where}: missing field(s) {', '.join(missing)}")
                for f in ("suite", "case", "counterpart", "postgresql", "pgssl"):
                    if not isinstance(record[f], str):
                        fail(f"{where}: {f} must be a string")
                if not isinstance(record["match"], bool):
                    fail(f"{where}: match must be true or false")
                if record["difference"] is not None and not isinstance(record["difference"], str):
                    fail(f"{where}: difference must be null or a string")
                if record["match"] and record["difference"]:
                    print(f"conformance-report: {where}: a matching case with a difference "
                          "(ignored)", file=sys.stderr)
                key = (record["suite"], record["case"])
                if key in seen:
                    print(f"conformance-report: {where}: case {record['case']!r} of "
                          f"{record['suite']!r} appears more than once", file=sys.stderr)
                seen.add(key)
                record["_file"] = path.name
                suites.setdefault(record["suite"], []).append(record)
    # Tests run in parallel and append in any order: sort, so the page only changes when a
    # result does.
    for records in suites.values():
        records.sort(key=lambda r: r["case"])
    return suites, [p.name for p in files]


def deliberate(record):
    return not record["match"] and bool(record["difference"])


def counts(records):
    cases = len(records)
    matching = sum(1 for r in records if r["match"])
    planned = sum(1 for r in records if deliberate(r))
    return cases, matching, planned, cases - matching - planned


def cell(text):
    """Table-cell text: Markdown's special characters escaped, newlines as <br>."""
    text = text.replace("\\", "\\\\")
    for c in "|*_`[]":
        text = text.replace(c, "\\" + c)
    text = text.replace("<", "&lt;")
    return "<br>".join(text.splitlines()) if "\n" in text else text


def anchor(title):
    """GitHub's heading anchor."""
    out = "".join(c for c in title.lower() if c.isalnum() or c in " -_")
    return out.replace(" ", "-")


def render(suites, files, results_dir):
    lines = [
        "# Conformance",
        "",
        "pgssl's conformance suites run PostgreSQL's own test cases against real clients and "
        "servers and compare what pgssl does with what PostgreSQL (or libpq) does. This page is "
        "generated by `python3 scripts/conformance-report.py` from the suites' results "
        f"({', '.join(f'`{f}`' for f in files)} in `{results_dir}`); do not edit it by hand. "
        "To run every suite and regenerate it: `bash scripts/conformance.sh`.",
        "",
        "## Summary",
        "",
        "| suite | cases | matching | deliberate differences | other differences |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    everything = []
    for suite, records in suites.items():
        everything.extend(records)
        c = counts(records)
        lines.append(f"| [{cell(suite)}](#{anchor(suite)}) | {c[0]} | {c[1]} | {c[2]} | {c[3]} |")
    c = counts(everything)
    lines.append(f"| **all** | **{c[0]}** | **{c[1]}** | **{c[2]}** | **{c[3]}** |")
    lines += ["", "## Deliberate differences", ""]
    planned = [r for r in everything if deliberate(r)]
    if planned:
        for r in planned:
            lines.append(f"- {cell(r['suite'])}, {cell(r['case'])}: {cell(r['difference'])}")
    else:
        lines.append("None.")
    for suite, records in suites.items():
        c = counts(records)
        sources = sorted({r["_file"] for r in records})
        lines += [
            "",
            f"## {cell(suite)}",
            "",
            f"{c[0]} cases, {c[1]} matching, {c[2]} deliberate differences, "
            f"{c[3]} other differences (from {', '.join(f'`{s}`' for s in sources)}).",
            "",
            "| case | PostgreSQL | pgssl | match |",
            "| --- | --- | --- | --- |",
        ]
        for r in records:
            case = cell(r["case"])
            if r["counterpart"]:
                case += f"<br><sub>{cell(r['counterpart'])}</sub>"
            if r["match"]:
                verdict = "yes"
            elif deliberate(r):
                verdict = "no (deliberate)"
            else:
                verdict = "**no**"
            lines.append(f"| {case} | {cell(r['postgresql'])} | {cell(r['pgssl'])} | {verdict} |")
    return "\n".join(lines) + "\n"


def main():
    parser = argparse.ArgumentParser(
        description="Writes docs/conformance.md from target/conformance/*.jsonl.")
    parser.add_argument("--results", type=Path, default=ROOT / "target" / "conformance",
                        help="directory of the suites' *.jsonl files (default: %(default)s)")
    parser.add_argument("--output", type=Path, default=ROOT / "docs" / "conformance.md",
                        help="Markdown file to write (default: %(default)s)")
    args = parser.parse_args()
    if not args.results.is_dir():
        fail(f"{args.results} does not exist: run the conformance tests first "
             "(e.g. cargo test --test conformance conformance_matrix::)")
    suites, files = load(args.results)
    if not suites:
        fail(f"no results in {args.results}/*.jsonl: run the conformance tests first")
    try:
        shown = args.results.resolve().relative_to(ROOT)
    except ValueError:
        shown = args.results
    text = render(suites, files, shown)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.output.with_name(args.output.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, args.output)
    total = counts([r for rs in suites.values() for r in rs])
    print(f"{args.output}: {len(suites)} suite(s), {total[0]} cases, {total[1]} matching, "
          f"{total[2]} deliberate differences, {total[3]} other differences")


if __name__ == "__main__":
    main()
