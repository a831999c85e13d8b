#!/usr/bin/env bash
# Fuzz smoke test: runs every cargo-fuzz target for FUZZ_SECONDS (default 30) seconds each,
# starting from a few seed inputs, and exits non-zero if any target crashes.
# See docs/fuzzing.md.
set -euo pipefail

cd "$(dirname "$0")/.."
secs="${FUZZ_SECONDS:-30}"
targets=(decode_initial server_negotiator client_negotiator proxy_header)

if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
    cargo install cargo-fuzz --locked
fi

# Seeds. fuzz/corpus is git-ignored; seeds are written only if missing, so a corpus grown
# by earlier runs is kept.
seed() { # TARGET NAME BYTES (printf escapes)
    local dir="fuzz/corpus/$1"
    mkdir -p "$dir"
    [[ -e "$dir/seed-$2" ]] || printf "$3" >"$dir/seed-$2"
}
ssl='\x00\x00\x00\x08\x04\xd2\x16\x2f'                      # SSLRequest
gss='\x00\x00\x00\x08\x04\xd2\x16\x30'                      # GSSENCRequest
cancel='\x00\x00\x00\x10\x04\xd2\x16\x2e\x00\x00\x00\x2a\x01\x02\x03\x04'
startup='\x00\x00\x00\x20\x00\x03\x00\x00user\x00alice\x00database\x00db\x00\x00'
hello='\x16\x03\x01\x00\x05\x00\x00\x00'                    # start of a TLS ClientHello
error='E\x00\x00\x00\x1dSFATAL\x00VFATAL\x00C28000\x00Mx\x00\x00'

seed decode_initial ssl "$ssl"
seed decode_initial gss "$gss"
seed decode_initial cancel "$cancel"
seed decode_initial startup "$startup"
seed decode_initial direct '\x16'
seed decode_initial error "$error"

# Header: max_v2_len (2 bytes, here 4096) and a split byte (see fuzz_targets/proxy_header.rs).
seed proxy_header v1-tcp4 '\x10\x00\x0aPROXY TCP4 192.0.2.1 10.0.0.2 56324 5432\r\n'
seed proxy_header v1-unknown '\x10\x00\x05PROXY UNKNOWN\r\n'
seed proxy_header v2-tcp4-alpn '\x10\x00\x14\r\n\r\n\x00\r\nQUIT\n\x21\x11\x00\x19\xc0\x00\x02\x01\x0a\x00\x00\x02\xdc\x04\x15\x38\x01\x00\x0apostgresql'
seed proxy_header v2-local '\x10\x00\x03\r\n\r\n\x00\r\nQUIT\n\x20\x00\x00\x00'

# Header: policy bits, chunking, TLS result, flags (see fuzz_targets/server_negotiator.rs).
seed server_negotiator plaintext "\x00\x00\x00\x01$startup"
seed server_negotiator ssl-accepted "\x01\x00\x00\x01$ssl$startup"
seed server_negotiator ssl-rejected "\x00\x00\x00\x01$ssl$startup"
seed server_negotiator gss-ssl-bytewise "\x01\x40\x00\x01$gss$ssl$startup"
seed server_negotiator direct "\x03\x00\x00\x01$hello$startup"
seed server_negotiator cancel "\x00\x01\x00\x01$cancel"
seed server_negotiator plaintext-refused "\x05\xc5\x00\x01$startup"
v1='PROXY TCP4 192.0.2.1 10.0.0.2 56324 5432\r\n'
v2='\r\n\r\n\x00\r\nQUIT\n\x21\x11\x00\x0c\xc0\x00\x02\x01\x0a\x00\x00\x02\xdc\x04\x15\x38'
seed server_negotiator proxied-v1-ssl "\x11\x00\x00\x01$v1$ssl$startup"
seed server_negotiator proxied-v2-direct "\x13\x40\x00\x01$v2$hello$startup"
seed server_negotiator untrusted-header "\x21\x00\x00\x01$v1$ssl"

# Header: sslmode index and direct bit, then one control byte per step
# (see fuzz_targets/client_negotiator.rs).
seed client_negotiator prefer-S '\x02\x01S\x00\x02'
seed client_negotiator prefer-N '\x02\x01N\x02'
seed client_negotiator prefer-tls-failed '\x02\x01S\x03\x02'
seed client_negotiator require-direct '\x83\x00\x02'
seed client_negotiator allow-retry '\x01\x00\x01S\x00\x02'

failed=()
for target in "${targets[@]}"; do
    echo "=== fuzz $target for ${secs}s"
    if ! cargo +nightly fuzz run "$target" -- -max_total_time="$secs" -timeout=10; then
        failed+=("$target")
    fi
done

if ((${#failed[@]})); then
    echo "fuzz smoke FAILED: ${failed[*]} (inputs in fuzz/artifacts/; see docs/fuzzing.md)" >&2
    exit 1
fi
echo "fuzz smoke passed: ${targets[*]}"
