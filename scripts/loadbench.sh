#!/usr/bin/env bash
# Whole connections side by side: conn/s and server CPU per connection under pgbench -C, and RSS
# per idle TLS connection, for a raw OpenSSL loop, pgssl's blocking and tokio adapters,
# examples/server, PgBouncer and PostgreSQL 15 (docs/performance.md, "Whole connections").
#
#   bash scripts/loadbench.sh                    # default: 5 s per server and case, 1000 idle (a few minutes)
#   bash scripts/loadbench.sh --duration 30 --rounds 3 --idle 10000   # longer
#   bash scripts/loadbench.sh --servers ace --tls 1.3 --certs ecdsa --idle 0
#
# Arguments go to scripts/loadbench.py (--help lists them). Needs root (PostgreSQL and PgBouncer
# run as the postgres user through runuser); installs pgbench, PostgreSQL 15 and PgBouncer with
# apt-get when missing. CARGO_TARGET_DIR is honoured.
set -euo pipefail

cd "$(dirname "$0")/.."

missing=()
command -v pgbench >/dev/null || missing+=(postgresql-client-15)
[ -x /usr/lib/postgresql/15/bin/postgres ] || missing+=(postgresql-15)
command -v pgbouncer >/dev/null || missing+=(pgbouncer)
command -v openssl >/dev/null || missing+=(openssl)
command -v python3 >/dev/null || missing+=(python3)
if [ ${#missing[@]} -gt 0 ]; then
    apt-get update
    DEBIAN_FRONTEND=noninteractive apt-get install -y "${missing[@]}"
fi
id postgres >/dev/null 2>&1 || { echo "no postgres user (install postgresql-15)" >&2; exit 1; }
# Debian's packages may start their own instances; ours run on free ports of their own.

target_dir="${CARGO_TARGET_DIR:-target}"
cargo build --release --features tokio --example bench_load --example server

# Up to 10000 idle connections plus the load: the servers need the file descriptors.
ulimit -n 20000 2>/dev/null || true

exec python3 scripts/loadbench.py \
    --bench-bin "$target_dir/release/examples/bench_load" \
    --server-bin "$target_dir/release/examples/server" "$@"
