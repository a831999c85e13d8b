#!/usr/bin/env bash
# Regenerates the test PKI in tests/certs/ (see README.md for the file list).
#
#   bash tests/certs/make.sh
#
# Modelled on PostgreSQL's src/test/ssl PKI. Needs only the `openssl` CLI
# (OpenSSL 3.0 or later) and coreutils. Every certificate and CRL is valid
# for DAYS days so that the committed output does not expire. The script is
# idempotent: it first deletes its own previous outputs (never make.sh or
# README.md) and prints nothing unless a command fails.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")"
umask 022

DAYS=10000

TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT

# Keep the system openssl.cnf out of the picture: every extension we want is
# spelled out below.
cat >"$TMP/openssl.cnf" <<'EOF'
[ req ]
distinguished_name = req_dn
prompt             = no
string_mask        = utf8only

[ req_dn ]
# Unused: every request passes -subj.
CN = unused

[ ca_ext ]
basicConstraints       = critical, CA:true
keyUsage               = critical, keyCertSign, cRLSign
subjectKeyIdentifier   = hash
authorityKeyIdentifier = keyid:always
EOF
export OPENSSL_CONF="$TMP/openssl.cnf"

# Run a command quietly; show its output only if it fails.
q() {
    local out
    if ! out=$("$@" 2>&1); then
        printf '%s\n' "$out" >&2
        printf 'make.sh: command failed: %s\n' "$*" >&2
        return 1
    fi
}

# ---------------------------------------------------------------------------
# Remove previous outputs.
rm -f -- ./*.crt ./*.key ./*.crl
rm -rf -- ./data-dir ./*-crldir

# ---------------------------------------------------------------------------
# Helpers.

# Serial numbers are handed out in order, starting at 0x1001, so that every
# certificate has a distinct, stable-looking serial.
SERIAL=$((0x1000))
next_serial() { SERIAL=$((SERIAL + 1)); }

# genkey FILE TYPE -- unencrypted PKCS#8 PEM private key, mode 0600.
# TYPE is rsa (2048 bits), ec (P-256), ed25519 or rsapss (2048 bits).
genkey() {
    local file=$1 type=$2
    local -a opts
    case $type in
        rsa)     opts=(-algorithm RSA -pkeyopt rsa_keygen_bits:2048) ;;
        ec)      opts=(-algorithm EC -pkeyopt ec_paramgen_curve:P-256) ;;
        ed25519) opts=(-algorithm ED25519) ;;
        rsapss)  opts=(-algorithm RSA-PSS -pkeyopt rsa_keygen_bits:2048) ;;
        *) echo "make.sh: unknown key type $type" >&2; return 1 ;;
    esac
    (umask 077 && q openssl genpkey "${opts[@]}" -out "$file")
    chmod 600 "$file"
}

# self_signed_ca NAME SUBJECT -- NAME.key + self-signed NAME.crt.
self_signed_ca() {
    local name=$1 subj=$2
    genkey "$name.key" rsa
    next_serial
    q openssl req -new -x509 -key "$name.key" -subj "$subj" \
        -days "$DAYS" -sha256 -set_serial "$SERIAL" \
        -extensions ca_ext -out "$name.crt"
}

# issue NAME KEYFILE ISSUER DIGEST SUBJECT EXTENSIONS [extra x509 args...]
# Writes NAME.crt for KEYFILE, signed by ISSUER.crt/ISSUER.key.
issue() {
    local name=$1 key=$2 issuer=$3 md=$4 subj=$5 ext=$6
    shift 6
    next_serial
    {
        echo '[ ext ]'
        printf '%s\n' "$ext"
        echo 'subjectKeyIdentifier   = hash'
        echo 'authorityKeyIdentifier = keyid:always'
    } >"$TMP/$name.ext"
    q openssl req -new -key "$key" -subj "$subj" -out "$TMP/$name.csr"
    q openssl x509 -req -in "$TMP/$name.csr" \
        -CA "$issuer.crt" -CAkey "$issuer.key" -set_serial "$SERIAL" \
        -days "$DAYS" "-$md" -extfile "$TMP/$name.ext" -extensions ext \
        "$@" -out "$name.crt"
}

# leaf_ext server|client KEYTYPE [SAN] -- extension lines for an end entity.
leaf_ext() {
    local eku ku
    if [ "$1" = server ]; then eku=serverAuth; else eku=clientAuth; fi
    if [ "$2" = rsa ]; then
        ku='digitalSignature, keyEncipherment'
    else
        ku='digitalSignature'
    fi
    echo 'basicConstraints       = critical, CA:false'
    echo "keyUsage               = critical, $ku"
    echo "extendedKeyUsage       = $eku"
    if [ -n "${3:-}" ]; then
        echo "subjectAltName         = $3"
    fi
}

# server NAME KEYTYPE DIGEST SUBJECT [SAN] -- key + certificate from server_ca.
server() {
    local name=$1 kt=$2 md=$3 subj=$4 san=${5:-}
    genkey "$name.key" "$kt"
    issue "$name" "$name.key" server_ca "$md" "$subj" \
        "$(leaf_ext server "$kt" "$san")"
}

# client NAME KEYFILE ISSUER SUBJECT -- certificate for an RSA client key.
client() {
    local name=$1 key=$2 issuer=$3 subj=$4
    issue "$name" "$key" "$issuer" sha256 "$subj" "$(leaf_ext client rsa)"
}

# ca_db CA -- a throwaway `openssl ca` database for revocation and CRLs.
ca_db() {
    local ca=$1 d="$TMP/db-$1"
    mkdir "$d"
    : >"$d/index.txt"
    echo 1000 >"$d/crlnumber"
    cat >"$d/ca.cnf" <<EOF
[ ca ]
default_ca = this_ca

[ this_ca ]
database         = $d/index.txt
crlnumber        = $d/crlnumber
certificate      = $ca.crt
private_key      = $ca.key
default_md       = sha256
default_crl_days = $DAYS
crl_extensions   = crl_ext

[ crl_ext ]
authorityKeyIdentifier = keyid:always
EOF
}
revoke() { q openssl ca -config "$TMP/db-$1/ca.cnf" -revoke "$2.crt"; }
gencrl() {
    q openssl ca -config "$TMP/db-$1/ca.cnf" -gencrl -crldays "$DAYS" -out "$2"
}

# crldir DIR CRL... -- hash directory with each CRL stored as HASH.r0.
crldir() {
    local dir=$1 crl hash
    shift
    mkdir "$dir"
    for crl in "$@"; do
        hash=$(openssl crl -hash -noout -in "$crl")
        cp "$crl" "$dir/$hash.r0"
    done
}

# ---------------------------------------------------------------------------
# Certificate authorities.

self_signed_ca root_ca '/CN=Test root CA for PostgreSQL SSL regression test suite'

genkey server_ca.key rsa
issue server_ca server_ca.key root_ca sha256 \
    '/CN=Test CA for PostgreSQL SSL regression test server certs' \
    "$(printf 'basicConstraints = critical, CA:true\nkeyUsage = critical, keyCertSign, cRLSign')"

genkey client_ca.key rsa
issue client_ca client_ca.key root_ca sha256 \
    '/CN=Test CA for PostgreSQL SSL regression test client certs' \
    "$(printf 'basicConstraints = critical, CA:true\nkeyUsage = critical, keyCertSign, cRLSign')"

self_signed_ca other_ca '/CN=Unrelated test CA (not trusted by the pgssl test suite)'

cat root_ca.crt server_ca.crt >root+server_ca.crt
cat root_ca.crt client_ca.crt >root+client_ca.crt

# ---------------------------------------------------------------------------
# Server certificates (signed by server_ca).

CN=common-name.pg-ssltest.test
LOCALHOST_SAN='DNS:localhost, IP:127.0.0.1, IP:::1'

server server-cn-only            rsa sha256 "/O=PGDG/CN=$CN"
server server-cn-and-alt-names   rsa sha256 "/O=PGDG/CN=$CN" \
    'DNS:dns1.alt-name.pg-ssltest.test, DNS:dns2.alt-name.pg-ssltest.test'
server server-multiple-alt-names rsa sha256 '/O=PGDG' \
    'DNS:dns1.alt-name.pg-ssltest.test, DNS:dns2.alt-name.pg-ssltest.test, DNS:*.wildcard.pg-ssltest.test'
server server-single-alt-name    rsa sha256 '/O=PGDG' \
    'DNS:single.alt-name.pg-ssltest.test'
server server-no-names           rsa sha256 '/O=PGDG'
server server-ip-cn-only         rsa sha256 '/O=PGDG/CN=192.0.2.1'
server server-ip-alt-names       rsa sha256 '/O=PGDG' \
    'IP:192.0.2.1, IP:2001:db8::1'
server server-ip-in-dnsname      rsa sha256 '/O=PGDG' \
    'DNS:192.0.2.1'
server server-cn-and-ip-alt-names rsa sha256 "/O=PGDG/CN=$CN" \
    'IP:192.0.2.1, IP:2001:db8::1'
server server-ip-cn-and-alt-names rsa sha256 '/O=PGDG/CN=192.0.2.2' \
    'IP:192.0.2.1, DNS:dns1.alt-name.pg-ssltest.test'
server server-wildcard           rsa sha256 '/O=PGDG/CN=*.pg-ssltest.test'
server server-localhost          rsa sha256 '/O=PGDG/CN=localhost' "$LOCALHOST_SAN"
server server-revoked            rsa sha256 "/O=PGDG/CN=$CN"

# Same names as server-cn-only; the key is AES-256 encrypted ("secret1").
genkey "$TMP/server-password.key" rsa
issue server-password "$TMP/server-password.key" server_ca sha256 \
    "/O=PGDG/CN=$CN" "$(leaf_ext server rsa)"
(umask 077 && q openssl pkey -in "$TMP/server-password.key" -aes256 \
    -passout pass:secret1 -out server-password.key)
chmod 600 server-password.key

# Other key types.
server server-ecdsa   ec      sha256 '/O=PGDG/CN=localhost' "$LOCALHOST_SAN"
server server-ed25519 ed25519 sha256 '/O=PGDG/CN=localhost' "$LOCALHOST_SAN"

# RSA-PSS key; server_ca signs it with RSASSA-PSS (SHA-256) as well.
genkey server-rsapss.key rsapss
issue server-rsapss server-rsapss.key server_ca sha256 '/O=PGDG/CN=localhost' \
    "$(leaf_ext server rsapss "$LOCALHOST_SAN")" \
    -sigopt rsa_padding_mode:pss -sigopt rsa_pss_saltlen:digest

# Signature-digest variants (tls-server-end-point channel binding).
server server-sha1   rsa sha1   '/O=PGDG/CN=localhost' "$LOCALHOST_SAN"
server server-sha384 rsa sha384 '/O=PGDG/CN=localhost' "$LOCALHOST_SAN"
server server-sha512 rsa sha512 '/O=PGDG/CN=localhost' "$LOCALHOST_SAN"

cat server-localhost.crt server_ca.crt >server-localhost+server_ca.crt
cat server-cn-only.crt server_ca.crt >server-cn-only+server_ca.crt

# ---------------------------------------------------------------------------
# Client certificates (signed by client_ca unless stated).

genkey client.key rsa
client client client.key client_ca '/CN=ssltestuser'

genkey client-dn.key rsa
client client-dn client-dn.key client_ca \
    '/O=PGDG/OU=Engineering/OU=Testing/CN=ssltestuser-dn'

genkey client-revoked.key rsa
client client-revoked client-revoked.key client_ca '/CN=ssltestuser'

# Encrypted keys, passphrase "dUmmyP^#+": PKCS#8 PEM and PKCS#8 DER.
genkey "$TMP/client-encrypted.key" rsa
client client-encrypted "$TMP/client-encrypted.key" client_ca '/CN=ssltestuser'
(umask 077 && q openssl pkey -in "$TMP/client-encrypted.key" -aes256 \
    -passout 'pass:dUmmyP^#+' -out client-encrypted-pem.key)
(umask 077 && q openssl pkcs8 -topk8 -in "$TMP/client-encrypted.key" \
    -v2 aes-256-cbc -passout 'pass:dUmmyP^#+' -outform DER \
    -out client-encrypted-der.key)
chmod 600 client-encrypted-pem.key client-encrypted-der.key

# client.key as unencrypted PKCS#8 DER.
(umask 077 && q openssl pkey -in client.key -outform DER -out client-der.key)
chmod 600 client-der.key

cat client.crt client_ca.crt >client+client_ca.crt

# A client certificate from a CA nobody trusts.
genkey client-other-ca.key rsa
client client-other-ca client-other-ca.key other_ca '/CN=ssltestuser'

# ---------------------------------------------------------------------------
# Revocation lists.

ca_db root_ca
ca_db server_ca
ca_db client_ca
revoke server_ca server-revoked
revoke client_ca client-revoked
gencrl root_ca root.crl
gencrl server_ca server.crl
gencrl client_ca client.crl

cat root.crl server.crl >root+server.crl
cat root.crl client.crl >root+client.crl

crldir root+server-crldir root.crl server.crl
crldir root+client-crldir root.crl client.crl

# ---------------------------------------------------------------------------
# A PostgreSQL-style data directory.

mkdir data-dir
cat server-localhost.crt server_ca.crt >data-dir/server.crt
(umask 077 && cp server-localhost.key data-dir/server.key)
chmod 600 data-dir/server.key
cp root+client_ca.crt data-dir/root.crt
cp root+client.crl data-dir/root.crl
