#!/usr/bin/env bash
# Runs pgssl's conformance suites against real peers and regenerates docs/conformance.md.
#
#   bash scripts/conformance.sh
#
# The suites: the libpq_encryption negotiation matrix (tests/conformance/conformance_matrix.rs),
# the certificate suites modelled on src/test/ssl/t/001_ssltests.pl (tests/tls/client_tls.rs,
# tests/conformance/conformance_certs.rs) and the other peers
# (tests/conformance/conformance_peers.rs). Each writes its results to target/conformance/*.jsonl;
# scripts/conformance-report.py turns them into the page. The `conformance` test binary holds all
# but client_tls (plus psql_peer, which writes no results); client_tls is a module of the `tls`
# binary, run alone by its name.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo test --test conformance
cargo test --test tls client_tls::
python3 scripts/conformance-report.py --results target/conformance --output docs/conformance.md
