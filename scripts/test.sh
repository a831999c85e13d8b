#!/usr/bin/env bash
# The whole test suite, installing what it needs on a fresh machine (Debian, run as root).
#
#   bash scripts/test.sh
#
# It installs what is missing — the OpenSSL layer's build dependencies (libssl-dev, pkg-config)
# and the real peers the tests talk to (psql) — then runs every test with every feature.
set -euo pipefail
cd "$(dirname "$0")/.."

need_pkgs=()
dpkg -s libssl-dev >/dev/null 2>&1 || need_pkgs+=(libssl-dev)
command -v pkg-config >/dev/null 2>&1 || need_pkgs+=(pkg-config)
# Real peers: psql (libpq 15), the PostgreSQL 15 server (and its `postgres` user, which the
# key-ownership tests run as), and the openssl CLI.
command -v psql >/dev/null 2>&1 || need_pkgs+=(postgresql-client)
[ -x /usr/lib/postgresql/15/bin/postgres ] || need_pkgs+=(postgresql)
command -v openssl >/dev/null 2>&1 || need_pkgs+=(openssl)
command -v runuser >/dev/null 2>&1 || need_pkgs+=(util-linux)
# PgBouncer, as a client and as a TLS server of pgssl (tests/conformance/conformance_peers.rs).
[ -x /usr/sbin/pgbouncer ] || need_pkgs+=(pgbouncer)
# HAProxy, the load balancer sending PROXY protocol headers (tests/adapters/haproxy.rs).
[ -x /usr/sbin/haproxy ] || need_pkgs+=(haproxy)
python3 -m pip --version >/dev/null 2>&1 || need_pkgs+=(python3-pip)
if ((${#need_pkgs[@]})); then
    echo "installing: ${need_pkgs[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_pkgs[@]}"
fi

# Python peers: psycopg (with its bundled libpq 18, which speaks direct SSL), asyncpg (its own
# protocol code, direct TLS included) and pg8000.
python3 -c 'import psycopg, asyncpg, pg8000' 2>/dev/null ||
    python3 -m pip install -q --disable-pip-version-check --root-user-action=ignore \
        'psycopg[binary]' asyncpg pg8000

# Every feature but `vendored` (which builds OpenSSL from source instead of using the system's,
# whose openssl.cnf the tests exercise); .ci/run builds and runs the TLS tests with it once.
features="tokio tokio-postgres"
cargo test --features "$features" --all-targets
# Doc tests (the README's and the crate docs' examples are compiled).
cargo test --features "$features" --doc
