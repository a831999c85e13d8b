#!/usr/bin/env bash
# Runs pgssl's conformance suites against real peers and regenerates docs/conformance.md.
#
#   bash scripts/conformance.sh
#
# The suites: the libpq_encryption negotiation matrix (tests/conformance_matrix.rs), the
# certificate suites modelled on src/test/ssl/t/001_ssltests.pl (tests/client_tls.rs,
# tests/conformance_certs.rs) and the other peers (tests/conformance_peers.rs). Each writes
# its results to target/conformance/*.jsonl; scripts/conformance-report.py turns them into the page.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo test --test conformance_matrix --test client_tls --test conformance_certs --test conformance_peers
python3 scripts/conformance-report.py --results target/conformance --output docs/conformance.md
