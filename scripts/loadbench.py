#!/usr/bin/env python3
"""Whole-connection load and idle memory, side by side (docs/performance.md, "Whole connections").

Run through scripts/loadbench.sh, which installs the peers and builds the servers. Standard
library only. Every server gets the same client load, one after the other:

  pgbench -n -C -c CLIENTS -j JOBS -T SECONDS -f select1.sql "... sslmode=require"

and is measured over the same window: conn/s (transactions processed / wall time of pgbench;
with -C every transaction is a connection), and server CPU per connection (utime + stime of the
server's processes from /proc over the window, exited children included through the parent's
cutime + cstime, divided by the connections). Then N idle TLS connections (SSLRequest, TLS 1.3,
StartupMessage, ReadyForQuery, then idle) are held against (b)-(e) and the server's RSS growth
per connection is reported.
"""

import argparse
import os
import shutil
import signal
import socket
import ssl
import statistics
import struct
import subprocess
import sys
import tempfile
import time

PG_BIN = "/usr/lib/postgresql/15/bin"
CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")

SERVERS = [
    ("a", "raw", "raw OpenSSL loop (floor)"),
    ("b", "blocking", "pgssl blocking adapter"),
    ("c", "tokio", "pgssl tokio adapter"),
    ("t", "tokio-st", "pgssl tokio adapter, current-thread runtime"),
    ("d", "example", "examples/server"),
    ("e", "pgbouncer", "PgBouncer (client TLS)"),
    ("f", "postgres", "PostgreSQL 15, ssl=on"),
]


def log(*a):
    print(*a, file=sys.stderr, flush=True)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, proc=None, timeout=30):
    end = time.time() + timeout
    while time.time() < end:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"exited with {proc.returncode} before listening")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"nothing listens on port {port} after {timeout} s")


# ------------------------------------------------------------------------------------------
# /proc: CPU and RSS of a process tree


def proc_stat(pid):
    with open(f"/proc/{pid}/stat") as f:
        s = f.read()
    rest = s[s.rindex(")") + 2 :].split()
    # rest[0] is field 3 (state): field n is rest[n - 3]
    return {
        "ppid": int(rest[1]),
        "utime": int(rest[11]),
        "stime": int(rest[12]),
        "cutime": int(rest[13]),
        "cstime": int(rest[14]),
        "rss": int(rest[21]) * PAGE,
    }


def tree(root):
    """root and its descendants: {pid: stat}."""
    stats = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                stats[int(d)] = proc_stat(int(d))
            except (OSError, ValueError, IndexError):
                pass
    out, todo = {}, [root]
    while todo:
        p = todo.pop()
        if p in stats and p not in out:
            out[p] = stats[p]
            todo.extend(c for c, s in stats.items() if s["ppid"] == p)
    return out


def cpu_seconds(root):
    t = tree(root)
    ticks = sum(s["utime"] + s["stime"] for s in t.values())
    if root in t:
        ticks += t[root]["cutime"] + t[root]["cstime"]
    return ticks / CLK_TCK


def rss_bytes(root):
    return sum(s["rss"] for s in tree(root).values())


# ------------------------------------------------------------------------------------------
# The servers


class Env:
    def __init__(self, args):
        self.args = args
        self.dir = tempfile.mkdtemp(prefix="pgssl-loadbench-")
        os.chmod(self.dir, 0o755)
        self.procs = []  # Popen objects we started
        self.pidfiles = []  # (pidfile, what) of daemons started under runuser
        script = os.path.join(self.dir, "select1.sql")
        with open(script, "w") as f:
            f.write("select 1;\n")
        self.script = script

    def path(self, *p):
        return os.path.join(self.dir, *p)

    def certs(self, kind, shared=False):
        """A self-signed certificate for localhost: ecdsa (P-256) or rsa (2048). The key is
        root's (0600) for the servers that run as root, and a copy owned by root and readable
        by the postgres group (0640, as PostgreSQL allows) for PostgreSQL and PgBouncer."""
        crt, key = self.path(f"{kind}.crt"), self.path(f"{kind}.key")
        shared_key = self.path(f"{kind}-postgres.key")
        if not os.path.exists(crt):
            if kind == "ecdsa":
                newkey = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"]
            else:
                newkey = ["-newkey", "rsa:2048"]
            subprocess.run(
                ["openssl", "req", "-x509", "-nodes", *newkey, "-keyout", key, "-out", crt,
                 "-days", "30", "-subj", "/CN=localhost",
                 "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
                check=True, capture_output=True)
            os.chmod(key, 0o600)
            os.chmod(crt, 0o644)
            shutil.copyfile(key, shared_key)
            shutil.chown(shared_key, "root", "postgres")
            os.chmod(shared_key, 0o640)
        return crt, (shared_key if shared else key)

    def spawn(self, cmd, logname, **kw):
        f = open(self.path(logname), "w")
        p = subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, **kw)
        self.procs.append(p)
        return p

    def start(self, name, kind):
        """Starts server `name` with certificate `kind`; returns (port, pid of the root process)."""
        crt, key = self.certs(kind, shared=name in ("postgres", "pgbouncer"))
        port = free_port()
        a = self.args
        if name in ("raw", "blocking", "tokio", "tokio-st"):
            p = self.spawn([a.bench_bin, name, "--listen", f"127.0.0.1:{port}", "--cert", crt,
                            "--key", key], f"{name}-{kind}.log")
            wait_port(port, p)
            return port, p.pid
        if name == "example":
            p = self.spawn([a.server_bin, "--listen", f"127.0.0.1:{port}", "-c",
                            f"ssl_cert_file={crt}", "-c", f"ssl_key_file={key}"],
                           f"example-{kind}.log")
            wait_port(port, p)
            return port, p.pid
        if name == "postgres":
            return self.start_postgres(kind, crt, key, port)
        if name == "pgbouncer":
            return self.start_pgbouncer(kind, crt, key, port)
        raise ValueError(name)

    def start_postgres(self, kind, crt, key, port):
        self.starts = getattr(self, "starts", 0) + 1  # a fresh cluster each time
        data = self.path(f"pg-{kind}-{self.starts}")
        sock = self.path(f"pgsock-{kind}-{self.starts}")
        for d in (data, sock):
            os.makedirs(d, mode=0o700, exist_ok=True)
            shutil.chown(d, "postgres", "postgres")
        subprocess.run(["runuser", "-u", "postgres", "--", f"{PG_BIN}/initdb", "-D", data, "-A",
                        "trust", "-U", "postgres", "--no-sync"], check=True, capture_output=True)
        with open(os.path.join(data, "postgresql.conf"), "a") as f:
            f.write(f"""
listen_addresses = '127.0.0.1'
port = {port}
unix_socket_directories = '{sock}'
ssl = on
ssl_cert_file = '{crt}'
ssl_key_file = '{key}'
max_connections = 200
fsync = off
synchronous_commit = off
shared_buffers = 32MB
""")
        with open(os.path.join(data, "pg_hba.conf"), "w") as f:
            f.write("local all all trust\nhostssl all all 127.0.0.1/32 trust\n")
        p = self.spawn(["runuser", "-u", "postgres", "--", f"{PG_BIN}/postgres", "-D", data],
                       f"postgres-{kind}.log")
        pidfile = os.path.join(data, "postmaster.pid")
        self.pidfiles.append(pidfile)
        wait_port(port, p)
        with open(pidfile) as f:
            pid = int(f.readline())
        self.pg = (sock, port)
        return port, pid

    def start_pgbouncer(self, kind, crt, key, port):
        # A trivial pool in front of the PostgreSQL of the same run (over its Unix socket, no
        # TLS on that side): the clients' TLS ends in PgBouncer.
        sock, pgport = self.pg
        d = self.path(f"pgbouncer-{kind}")
        os.makedirs(d, exist_ok=True)
        shutil.chown(d, "postgres", "postgres")
        with open(os.path.join(d, "userlist.txt"), "w") as f:
            f.write('"postgres" ""\n')
        ini = os.path.join(d, "pgbouncer.ini")
        with open(ini, "w") as f:
            f.write(f"""[databases]
postgres = host={sock} port={pgport} dbname=postgres user=postgres

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = {port}
unix_socket_dir =
auth_type = trust
auth_file = {d}/userlist.txt
pool_mode = transaction
max_client_conn = 20000
default_pool_size = 20
server_reset_query =
ignore_startup_parameters = extra_float_digits
client_tls_sslmode = require
client_tls_cert_file = {crt}
client_tls_key_file = {key}
client_tls_protocols = all
client_tls_ciphers = HIGH:MEDIUM:+3DES:!aNULL
log_connections = 0
log_disconnections = 0
logfile = {d}/pgbouncer.log
pidfile = {d}/pgbouncer.pid
""")
        pidfile = os.path.join(d, "pgbouncer.pid")
        p = self.spawn(["runuser", "-u", "postgres", "--", "pgbouncer", ini],
                       f"pgbouncer-{kind}.log")
        self.pidfiles.append(pidfile)
        wait_port(port, p)
        for _ in range(50):
            if os.path.exists(pidfile):
                break
            time.sleep(0.1)
        with open(pidfile) as f:
            pid = int(f.readline())
        return port, pid

    def stop_all(self):
        for pf in self.pidfiles:
            try:
                with open(pf) as f:
                    pid = int(f.readline())
                os.kill(pid, signal.SIGINT if "postmaster" in pf else signal.SIGTERM)
            except (OSError, ValueError):
                pass
        for p in self.procs:
            if p.poll() is None:
                p.terminate()
        for p in self.procs:
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                p.kill()
        self.procs, self.pidfiles = [], []

    def cleanup(self):
        self.stop_all()
        if not self.args.keep:
            shutil.rmtree(self.dir, ignore_errors=True)
        else:
            log(f"kept {self.dir}")


# ------------------------------------------------------------------------------------------
# The load


def dbname(name):
    return "postgres"


def run_pgbench(env, name, port, pid, tls):
    a = env.args
    conninfo = (f"host=127.0.0.1 port={port} user=postgres dbname={dbname(name)} "
                "sslmode=require")
    e = dict(os.environ)
    for k in list(e):
        if k.startswith("PG"):
            del e[k]
    if tls == "1.3":
        e["PGSSLMINPROTOCOLVERSION"] = "TLSv1.3"
    else:
        e["PGSSLMINPROTOCOLVERSION"] = "TLSv1.2"
        e["PGSSLMAXPROTOCOLVERSION"] = "TLSv1.2"
    cmd = ["pgbench", "-n", "-C", "-c", str(a.clients), "-j", str(a.jobs), "-T",
           str(a.duration), "-f", env.script, conninfo]
    cpu0 = cpu_seconds(pid)
    t0 = time.monotonic()
    r = subprocess.run(cmd, env=e, capture_output=True, text=True)
    wall = time.monotonic() - t0
    time.sleep(0.3)  # exited backends reaped by the postmaster
    cpu1 = cpu_seconds(pid)
    n = None
    failed = 0
    for line in r.stdout.splitlines():
        if line.startswith("number of transactions actually processed:"):
            n = int(line.split(":")[1].split()[0].split("/")[0])
        if line.startswith("number of failed transactions:"):
            failed = int(line.split(":")[1].split()[0])
    if r.returncode != 0 or not n:
        log(f"  pgbench against {name} failed ({r.returncode}): {r.stderr.strip()[-600:]}")
        return None
    if failed:
        log(f"  {name}: {failed} failed transactions")
    return {"conns": n, "cps": n / wall, "cpu_us": (cpu1 - cpu0) / n * 1e6}


def fmt_ratio(x, base):
    if x is None or base is None or base == 0:
        return "-"
    return f"{x / base:.2f}x"


def load(env):
    a = env.args
    names = [s for s in SERVERS if s[0] in a.servers]
    results = {}
    for kind in a.certs:
        started = {}
        order = [n for _, n, _ in names]
        if "pgbouncer" in order:  # PgBouncer's pool needs the PostgreSQL first
            order = ["postgres"] + [n for n in order if n != "postgres"]
        for name in order:
            try:
                started[name] = env.start(name, kind)
            except Exception as ex:  # a server that does not start is reported, not fatal
                log(f"  could not start {name} ({kind}): {ex}")
        for tls in a.tls:
            for rnd in range(a.rounds):
                for letter, name, _ in names:
                    if name not in started:
                        continue
                    port, pid = started[name]
                    log(f"{kind} TLS {tls} round {rnd + 1}: {letter} {name} ...")
                    r = run_pgbench(env, name, port, pid, tls)
                    if r:
                        results.setdefault((kind, tls, name), []).append(r)
                        log(f"  {r['cps']:.0f} conn/s, {r['cpu_us']:.0f} us CPU/conn")
        env.stop_all()
    print()
    print(f"pgbench -n -C -c {a.clients} -j {a.jobs} -T {a.duration} -f select1.sql "
          f"(sslmode=require), {a.rounds} round(s); medians over rounds")
    for kind in a.certs:
        for tls in a.tls:
            print()
            print(f"### {'ECDSA P-256' if kind == 'ecdsa' else 'RSA-2048'}, TLS {tls}")
            print()
            print("| server | conn/s | CPU us/conn | conn/s ÷ (a) | CPU ÷ (a) | conn/s ÷ (e) | CPU ÷ (e) |")
            print("|---|---:|---:|---:|---:|---:|---:|")

            def med(name, k):
                rs = results.get((kind, tls, name))
                return statistics.median(r[k] for r in rs) if rs else None

            base_a = (med("raw", "cps"), med("raw", "cpu_us"))
            base_e = (med("pgbouncer", "cps"), med("pgbouncer", "cpu_us"))
            for letter, name, label in names:
                cps, cpu = med(name, "cps"), med(name, "cpu_us")
                if cps is None:
                    print(f"| ({letter}) {label} | failed | | | | | |")
                    continue
                rs = results[(kind, tls, name)]
                rng = ""
                if len(rs) > 1:
                    rng = f" ({min(r['cpu_us'] for r in rs):.0f}-{max(r['cpu_us'] for r in rs):.0f})"
                print(f"| ({letter}) {label} | {cps:.0f} | {cpu:.0f}{rng} | "
                      f"{fmt_ratio(cps, base_a[0])} | {fmt_ratio(cpu, base_a[1])} | "
                      f"{fmt_ratio(cps, base_e[0])} | {fmt_ratio(cpu, base_e[1])} |")
    sys.stdout.flush()


# ------------------------------------------------------------------------------------------
# Idle connections


def startup_message(user, db):
    body = struct.pack("!I", 196608)
    for k, v in (("user", user), ("database", db)):
        body += k.encode() + b"\0" + v.encode() + b"\0"
    body += b"\0"
    return struct.pack("!I", len(body) + 4) + body


def read_until_ready(t):
    buf = b""
    while True:
        while len(buf) >= 5:
            tag = buf[0:1]
            (ln,) = struct.unpack("!I", buf[1:5])
            if len(buf) < 1 + ln:
                break
            if tag == b"E":
                raise RuntimeError(f"server error: {buf[5:1 + ln]!r}")
            buf = buf[1 + ln :]
            if tag == b"Z":
                return
        chunk = t.recv(4096)
        if not chunk:
            raise RuntimeError("closed before ReadyForQuery")
        buf += chunk


def idle_client(port, count, db):
    """Opens `count` TLS 1.3 connections and holds them until stdin closes."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    startup = startup_message("postgres", db)
    conns = []
    for _ in range(count):
        s = socket.create_connection(("127.0.0.1", port), timeout=30)
        s.sendall(struct.pack("!II", 8, 80877103))
        if s.recv(1) != b"S":
            raise RuntimeError("SSLRequest refused")
        t = ctx.wrap_socket(s)
        t.sendall(startup)
        read_until_ready(t)
        conns.append(t)
    print("ready", flush=True)
    sys.stdin.read()


def hold_idle(env, port, n, db):
    """Client processes holding n idle connections in all; returns them once all are up."""
    per = 4000
    procs = []
    left = n
    while left > 0:
        c = min(per, left)
        left -= c
        procs.append(subprocess.Popen([sys.executable, __file__, "idle-client", str(port), str(c), db],
                                      stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True))
    ok = True
    for p in procs:
        line = p.stdout.readline()
        if line.strip() != "ready":
            ok = False
    return procs, ok


def release(procs):
    for p in procs:
        try:
            p.stdin.close()
        except OSError:
            pass
    for p in procs:
        try:
            p.wait(timeout=60)
        except subprocess.TimeoutExpired:
            p.kill()


def idle(env):
    a = env.args
    kind = a.certs[0]
    wanted = [s for s in SERVERS if s[0] in a.servers and s[0] in "bctde"]
    rows = []
    for letter, name, label in wanted:
        if name == "pgbouncer":
            env.start("postgres", kind)  # the pool's backend
        port, pid = env.start(name, kind)
        db = dbname(name)
        log(f"idle: {letter} {name}, {a.idle} connections ...")
        warm, _ = hold_idle(env, port, 20, db)  # lazily created state is not counted
        release(warm)
        time.sleep(0.5)
        before = rss_bytes(pid)
        procs, ok = hold_idle(env, port, a.idle, db)
        time.sleep(1.0)
        after = rss_bytes(pid)
        release(procs)
        env.stop_all()
        if not ok:
            log(f"  {name}: not every connection reached ReadyForQuery")
            rows.append((letter, label, None, None, None))
            continue
        per = (after - before) / a.idle / 1024
        log(f"  RSS {before / 1048576:.1f} -> {after / 1048576:.1f} MiB: {per:.1f} KiB per connection")
        rows.append((letter, label, before, after, per))
    print()
    print(f"### Idle TLS 1.3 connections: {a.idle}, {'ECDSA P-256' if kind == 'ecdsa' else 'RSA-2048'}")
    print()
    print("| server | RSS before | RSS with the connections | KiB per connection | ÷ (e) |")
    print("|---|---:|---:|---:|---:|")
    base = next((r[4] for r in rows if r[0] == "e"), None)
    for letter, label, before, after, per in rows:
        if per is None:
            print(f"| ({letter}) {label} | failed | | | |")
            continue
        print(f"| ({letter}) {label} | {before / 1048576:.1f} MiB | {after / 1048576:.1f} MiB | "
              f"{per:.1f} | {fmt_ratio(per, base)} |")
    sys.stdout.flush()


def main():
    if len(sys.argv) > 1 and sys.argv[1] == "idle-client":
        idle_client(int(sys.argv[2]), int(sys.argv[3]), sys.argv[4])
        return
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--bench-bin", required=True)
    p.add_argument("--server-bin", required=True)
    p.add_argument("--duration", type=int, default=5, help="pgbench -T (seconds)")
    p.add_argument("--rounds", type=int, default=1)
    p.add_argument("--clients", type=int, default=4)
    p.add_argument("--jobs", type=int, default=2)
    p.add_argument("--servers", default="abctdef",
                   help="letters of the servers to run (t: tokio on a current-thread runtime)")
    p.add_argument("--tls", default="1.3,1.2")
    p.add_argument("--certs", default="ecdsa,rsa")
    p.add_argument("--idle", type=int, default=1000, help="idle connections (0: none)")
    p.add_argument("--no-load", action="store_true", help="only the idle connections")
    p.add_argument("--keep", action="store_true", help="keep the temporary directory")
    a = p.parse_args()
    a.tls = a.tls.split(",")
    a.certs = a.certs.split(",")
    env = Env(a)
    try:
        if not a.no_load:
            load(env)
        if a.idle:
            idle(env)
    finally:
        env.cleanup()


if __name__ == "__main__":
    main()
