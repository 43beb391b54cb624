#!/usr/bin/env python3
"""Security end to end (PROTOCOL.md §11), with real kvd processes and clients
that are not ours: Python's ssl module and `openssl s_client`.

Each test makes its own private CA with the `openssl` CLI in a temporary
directory, starts the kvd processes it needs on 127.0.0.1 and kills them by
PID when it ends (also on failure). Every wait is bounded.

    security_test.py --bin BUILD/bin [--scripts SCRIPTS_DIR] [unittest args]
"""

import argparse
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import unittest

BIN = None
SCRIPTS = None
WAIT_S = 30


def wait_for(predicate, what, timeout=WAIT_S):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError("timed out waiting for " + what)


def free_ports(n):
    socks, ports = [], []
    for _ in range(n):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        socks.append(s)
        ports.append(s.getsockname()[1])
    for s in socks:
        s.close()
    return ports


def run(cmd, **kw):
    return subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=60, **kw)


class TestCA:
    """A private CA and certificates signed by it (EC P-256)."""

    def __init__(self, directory, name="ca"):
        self.dir = directory
        self.name = name
        self.cert = os.path.join(directory, name + ".crt")
        key = os.path.join(directory, name + ".key")
        run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
             "-nodes", "-keyout", key, "-out", self.cert, "-days", "2", "-subj", "/CN=" + name])
        self.key = key

    def issue(self, cn):
        key = os.path.join(self.dir, f"{self.name}-{cn}.key")
        csr = os.path.join(self.dir, f"{self.name}-{cn}.csr")
        crt = os.path.join(self.dir, f"{self.name}-{cn}.crt")
        ext = os.path.join(self.dir, f"{self.name}-{cn}.ext")
        with open(ext, "w") as f:
            f.write("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
        run(["openssl", "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
             "-keyout", key, "-out", csr, "-subj", "/CN=" + cn])
        run(["openssl", "x509", "-req", "-in", csr, "-CA", self.cert, "-CAkey", self.key,
             "-CAcreateserial", "-out", crt, "-days", "2", "-extfile", ext])
        os.chmod(key, 0o600)
        return crt, key


def hash_password(password):
    out = run([os.path.join(BIN, "kvctl"), "user", "hash"], input=password + "\n").stdout
    lines = out.splitlines()
    assert len(lines) == 1, out
    return lines[0]


class Kvd:
    def __init__(self, workdir, node_id, port, args):
        self.node_id = node_id
        self.port = port
        self.address = f"127.0.0.1:{port}"
        self.log_path = os.path.join(workdir, node_id + ".log")
        self.data = os.path.join(workdir, "data-" + node_id)
        self.args = args
        self.proc = None

    def start(self):
        log = open(self.log_path, "a")
        self.proc = subprocess.Popen(
            [os.path.join(BIN, "kvd"), "--node-id", self.node_id, "--listen", self.address,
             "--data-dir", self.data] + self.args,
            stdout=log, stderr=subprocess.STDOUT)
        log.close()

    def log(self):
        with open(self.log_path, errors="replace") as f:
            return f.read()

    def kill(self, sig=signal.SIGKILL):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait(timeout=WAIT_S)

    def listening(self):
        if self.proc.poll() is not None:
            raise AssertionError(f"{self.node_id} exited {self.proc.returncode}:\n{self.log()}")
        try:
            socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
            return True
        except OSError:
            return False


class Line:
    """One JSON-lines connection over a socket (TLS or not)."""

    def __init__(self, sock):
        self.sock = sock
        self.buf = b""

    def call(self, obj):
        self.send_raw((obj if isinstance(obj, str) else json.dumps(obj)) + "\n")
        return json.loads(self.read_line())

    def send_raw(self, text):
        self.sock.sendall(text.encode())

    def read_line(self):
        while b"\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("closed by the server; read so far: %r" % self.buf)
            self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        return line.decode()


def code(resp):
    return "ok" if resp.get("ok") else resp["error"]["code"]


class SecurityTest(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="ringkv-security-", dir=os.environ.get("TMPDIR"))
        self.nodes = []

    def tearDown(self):
        for n in self.nodes:
            n.kill()
        if self._outcome_failed():
            for n in self.nodes:
                sys.stderr.write(f"---- {n.node_id} log\n{n.log()[-4000:]}\n")
        shutil.rmtree(self.dir, ignore_errors=True)

    def _outcome_failed(self):
        result = getattr(self._outcome, "result", None)
        errors = getattr(result, "errors", []) + getattr(result, "failures", [])
        return any(test is self for test, _ in errors)

    def write_private(self, name, text):
        path = os.path.join(self.dir, name)
        with open(path, "w") as f:
            f.write(text)
        os.chmod(path, 0o600)
        return path

    def users_file(self):
        users = [{"name": "reader", "role": "read", "password_hash": hash_password("r-pass")},
                 {"name": "writer", "role": "readwrite", "password_hash": hash_password("w-pass")},
                 {"name": "root", "role": "admin", "password_hash": hash_password("a-pass")}]
        return self.write_private("users.json", json.dumps({"users": users}))

    def start(self, node_id, port, args):
        n = Kvd(self.dir, node_id, port, args)
        self.nodes.append(n)
        n.start()
        wait_for(n.listening, node_id + " to listen")
        return n

    def tls_connect(self, port, ca):
        ctx = ssl.create_default_context(cafile=ca)
        raw = socket.create_connection(("127.0.0.1", port), timeout=10)
        return Line(ctx.wrap_socket(raw, server_hostname="127.0.0.1"))

    def kvctl(self, args, env_password=None, check=True):
        env = dict(os.environ)
        env.pop("RINGKV_PASSWORD", None)
        if env_password is not None:
            env["RINGKV_PASSWORD"] = env_password
        p = subprocess.run([os.path.join(BIN, "kvctl")] + args, capture_output=True, text=True,
                           timeout=60, env=env)
        if check and p.returncode != 0:
            raise AssertionError(f"kvctl {args} exited {p.returncode}: {p.stderr}")
        return p

    # ---- one node: TLS, users, roles, clients that are not ours ----

    def test_single_node_tls_and_users(self):
        ca = TestCA(self.dir)
        crt, key = ca.issue("n1")
        users = self.users_file()
        port, metrics_port = free_ports(2)
        n1 = self.start("n1", port, ["--tls-cert", crt, "--tls-key", key, "--auth-file", users,
                                     "--metrics-listen", f"127.0.0.1:{metrics_port}"])

        # Python's ssl module: TLS 1.2+, the certificate verified against the test CA.
        c = self.tls_connect(port, ca.cert)
        self.assertGreaterEqual(c.sock.version(), "TLSv1.2")
        # Every op before auth is refused, and the connection stays open.
        for op in ["ping", "get", "put", "delete", "stats", "cluster", "locate", "backup", "aae",
                   "compact", "_write", "_read", "_hello", "no_such_op"]:
            resp = c.call({"op": op, "key": "k", "value": 1, "id": op})
            self.assertEqual(code(resp), "unauthenticated", (op, resp))
            self.assertEqual(resp["id"], op)
        # A line that is not a request is still bad_request.
        self.assertEqual(code(c.call("not json")), "bad_request")
        # Wrong password and unknown user: one answer.
        wrong = c.call({"op": "auth", "user": "writer", "password": "nope"})
        unknown = c.call({"op": "auth", "user": "nobody", "password": "nope"})
        self.assertEqual(code(wrong), "unauthenticated")
        self.assertEqual(wrong["error"], unknown["error"])
        # The third failure on this connection is answered after about 300 ms.
        t0 = time.monotonic()
        c.call({"op": "auth", "user": "writer", "password": "nope"})
        self.assertGreaterEqual(time.monotonic() - t0, 0.25)
        # A fresh connection is not slowed by the other's failures.
        fresh = self.tls_connect(port, ca.cert)
        resp = fresh.call({"op": "auth", "user": "writer", "password": "w-pass"})
        self.assertEqual(resp, {"ok": True, "user": "writer", "role": "readwrite"})
        # The three failures are counted, in stats and in the metrics (the
        # metrics listener is plain HTTP on loopback, unauthenticated).
        self.assertEqual(fresh.call({"op": "stats"})["stats"]["auth_failures"], 3)
        with socket.create_connection(("127.0.0.1", metrics_port), timeout=10) as m:
            m.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            body = b""
            while chunk := m.recv(65536):
                body += chunk
        self.assertIn("\nringkv_auth_failures_total 3\n", body.decode())
        self.assertTrue(fresh.call({"op": "put", "key": "k", "value": {"a": 1}})["ok"])
        self.assertEqual(code(fresh.call({"op": "backup", "dir": "/tmp/x"})), "forbidden")
        # Switch to the read user: put is forbidden, get works.
        self.assertTrue(fresh.call({"op": "auth", "user": "reader", "password": "r-pass"})["ok"])
        self.assertEqual(code(fresh.call({"op": "put", "key": "k", "value": 2})), "forbidden")
        self.assertEqual(fresh.call({"op": "get", "key": "k"})["value"], {"a": 1})
        # Internal ops are forbidden to users (no cluster secret, so no peer).
        self.assertEqual(code(fresh.call({"op": "_read", "key": "k"})), "forbidden")
        # Pipelined: auth then put in one write; the put sees the auth.
        pipe = self.tls_connect(port, ca.cert)
        pipe.send_raw(json.dumps({"op": "auth", "user": "root", "password": "a-pass"}) + "\n" +
                      json.dumps({"op": "put", "key": "p", "value": 1}) + "\n")
        self.assertTrue(json.loads(pipe.read_line())["ok"])
        self.assertTrue(json.loads(pipe.read_line())["ok"])
        # backup's dir: absolute, no '..'.
        self.assertEqual(code(pipe.call({"op": "backup", "dir": "/tmp/../etc/x"})), "bad_request")
        self.assertEqual(code(pipe.call({"op": "backup", "dir": "rel"})), "bad_request")

        # A plaintext client is refused cleanly, and the node keeps serving.
        raw = Line(socket.create_connection(("127.0.0.1", port), timeout=10))
        raw.send_raw('{"op":"ping"}\n')
        try:
            line = raw.read_line()
            self.assertIn("TLS", line)
        except ConnectionError:
            pass  # closed without a word is a refusal too
        self.assertTrue(fresh.call({"op": "get", "key": "k"})["ok"])

        # openssl s_client, with TLS 1.1 refused and TLS 1.2 accepted.
        old = subprocess.run(["openssl", "s_client", "-connect", n1.address, "-tls1_1",
                              "-CAfile", ca.cert], input="", capture_output=True, text=True,
                             timeout=30)
        self.assertNotEqual(old.returncode, 0)
        # -quiet implies -ign_eof (s_client waits for the server to close):
        # read the two answers as they come, then end it.
        s = subprocess.Popen(["openssl", "s_client", "-connect", n1.address, "-tls1_2", "-quiet",
                              "-verify_return_error", "-CAfile", ca.cert],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
        replies = []
        try:
            s.stdin.write('{"op":"auth","user":"reader","password":"r-pass"}\n'
                          '{"op":"ping","id":7}\n')
            s.stdin.flush()
            reader = threading.Thread(
                target=lambda: replies.extend(json.loads(s.stdout.readline()) for _ in range(2)),
                daemon=True)
            reader.start()
            reader.join(30)
        finally:
            s.kill()
            s.wait()
        self.assertEqual(len(replies), 2, replies)
        self.assertEqual(replies[1], {"id": 7, "ok": True, "node": "n1"})

        # kvctl: --tls --tls-ca --user, the password from RINGKV_PASSWORD or a file.
        base = ["--host", n1.address, "--tls", "--tls-ca", ca.cert]
        self.kvctl(base + ["--user", "writer", "put", "kc", "v"], env_password="w-pass")
        pw = self.write_private("pw", "r-pass\n")
        got = self.kvctl(base + ["--user", "reader", "--password-file", pw, "get", "kc"])
        self.assertEqual(got.stdout.strip(), "v")
        denied = self.kvctl(base + ["--user", "reader", "--password-file", pw, "put", "kc", "w"],
                            check=False)
        self.assertEqual(denied.returncode, 3)
        self.assertIn("forbidden", denied.stderr)
        bad = self.kvctl(base + ["--user", "reader", "get", "kc"], env_password="wrong",
                         check=False)
        self.assertEqual(bad.returncode, 3)
        self.assertIn("unauthenticated", bad.stderr)
        self.assertNotIn("wrong", n1.log())  # no password in the log

        # SIGHUP reloads the users: a new user works, a broken file keeps the old table.
        with open(users) as f:
            table = json.load(f)
        table["users"].append({"name": "late", "role": "read",
                               "password_hash": hash_password("l-pass")})
        self.write_private("users.json", json.dumps(table))
        n1.proc.send_signal(signal.SIGHUP)
        wait_for(lambda: "users reloaded" in n1.log(), "the users to be reloaded")
        late = self.tls_connect(port, ca.cert)
        self.assertTrue(late.call({"op": "auth", "user": "late", "password": "l-pass"})["ok"])
        self.write_private("users.json", "{broken")
        n1.proc.send_signal(signal.SIGHUP)
        wait_for(lambda: "keeping the users loaded before" in n1.log(), "the bad reload")
        again = self.tls_connect(port, ca.cert)
        self.assertTrue(again.call({"op": "auth", "user": "late", "password": "l-pass"})["ok"])

        # SIGHUP reloads the certificate: new connections get the new one,
        # open ones go on; a key others can read is refused on reload too.
        def served_cn():
            conn = self.tls_connect(port, ca.cert)
            subject = dict(item[0] for item in conn.sock.getpeercert()["subject"])
            conn.sock.close()
            return subject["commonName"]
        self.assertEqual(served_cn(), "n1")
        crt2, key2 = ca.issue("n1-renewed")
        shutil.copyfile(crt2, crt)
        shutil.copyfile(key2, key)
        reloads = n1.log().count("TLS certificates reloaded")  # each SIGHUP above did one
        n1.proc.send_signal(signal.SIGHUP)
        wait_for(lambda: n1.log().count("TLS certificates reloaded") > reloads,
                 "the certificates to reload")
        self.assertEqual(served_cn(), "n1-renewed")
        self.assertEqual(again.call({"op": "get", "key": "k"})["value"], {"a": 1})
        os.chmod(key, 0o644)
        n1.proc.send_signal(signal.SIGHUP)
        wait_for(lambda: "reloading the TLS certificates failed" in n1.log(), "the refused reload")
        self.assertIn("readable by other users", n1.log())
        self.assertEqual(served_cn(), "n1-renewed")

    def test_refuses_to_start_insecurely(self):
        ca = TestCA(self.dir)
        crt, key = ca.issue("n1")
        users = self.users_file()
        os.chmod(users, 0o644)
        (port,) = free_ports(1)
        p = subprocess.run([os.path.join(BIN, "kvd"), "--listen", f"127.0.0.1:{port}",
                            "--data-dir", os.path.join(self.dir, "d"), "--auth-file", users],
                           capture_output=True, text=True, timeout=30)
        self.assertNotEqual(p.returncode, 0)
        self.assertIn("readable by other users", p.stderr)
        os.chmod(users, 0o600)
        ports = free_ports(2)
        cluster = f"n1=127.0.0.1:{ports[0]},n2=127.0.0.1:{ports[1]}"
        p = subprocess.run([os.path.join(BIN, "kvd"), "--listen", f"127.0.0.1:{ports[0]}",
                            "--data-dir", os.path.join(self.dir, "d"), "--cluster", cluster,
                            "--auth-file", users], capture_output=True, text=True, timeout=30)
        self.assertNotEqual(p.returncode, 0)
        self.assertIn("--cluster-secret-file", p.stderr)
        p = subprocess.run([os.path.join(BIN, "kvd"), "--listen", f"127.0.0.1:{ports[0]}",
                            "--data-dir", os.path.join(self.dir, "d"), "--cluster", cluster,
                            "--tls-cert", crt, "--tls-key", key],
                           capture_output=True, text=True, timeout=30)
        self.assertNotEqual(p.returncode, 0)
        self.assertIn("--tls-ca", p.stderr)

    def test_warns_when_open_beyond_loopback(self):
        (port,) = free_ports(1)
        n = self.start("n1", port, [])
        self.assertNotIn("authentication off", n.log())
        n.kill(signal.SIGTERM)
        # 0.0.0.0 binds every interface, loopback included; the test only
        # connects through 127.0.0.1.
        (port2,) = free_ports(1)
        n2 = Kvd(self.dir, "n2", port2, [])
        n2.address = f"0.0.0.0:{port2}"
        self.nodes.append(n2)
        n2.start()
        wait_for(n2.listening, "n2 to listen")
        wait_for(lambda: "authentication" in n2.log(), "the warning")

    # ---- a 3-node cluster: TLS with peer verification and a secret ----

    def cluster_args(self, ca, node_id, ports, secret, extra=()):
        crt, key = ca.issue(node_id)
        cluster = ",".join(f"n{i + 1}=127.0.0.1:{p}" for i, p in enumerate(ports))
        return ["--cluster", cluster, "--tls-cert", crt, "--tls-key", key, "--tls-ca", ca.cert,
                "--cluster-secret-file", secret, "--aae-interval-ms", "500"] + list(extra)

    def test_tls_cluster_with_secret_survives_sigkill(self):
        ca = TestCA(self.dir)
        secret = self.write_private("secret", "a-cluster-secret-of-some-length\n")
        users = self.users_file()
        ports = free_ports(3)
        nodes = [self.start(f"n{i + 1}", ports[i],
                            self.cluster_args(ca, f"n{i + 1}", ports, secret,
                                              ["--auth-file", users]))
                 for i in range(3)]
        c = self.tls_connect(ports[0], ca.cert)
        self.assertTrue(c.call({"op": "auth", "user": "root", "password": "a-pass"})["ok"])

        def all_up(line):
            resp = line.call({"op": "cluster"})
            return all(n["status"] == "up" for n in resp["nodes"])

        wait_for(lambda: all_up(c), "every peer up over TLS")
        for i in range(20):
            self.assertTrue(c.call({"op": "put", "key": f"k{i}", "value": i, "w": "all"})["ok"])
        # An internal op from a client is forbidden, admin or not: only the
        # secret's proof makes a connection a peer.
        self.assertEqual(code(c.call({"op": "_write", "key": "x", "version": "1:n1",
                                      "tombstone": False, "expires_ms": 0, "value": 1})),
                         "forbidden")
        nodes[2].kill()
        for i in range(20, 40):
            self.assertTrue(c.call({"op": "put", "key": f"k{i}", "value": i})["ok"])
        nodes[2].start()
        wait_for(nodes[2].listening, "n3 back")
        c3 = self.tls_connect(ports[2], ca.cert)
        self.assertTrue(c3.call({"op": "auth", "user": "reader", "password": "r-pass"})["ok"])

        def caught_up():
            for i in range(40):
                resp = c3.call({"op": "get", "key": f"k{i}", "local": True})
                if not resp.get("found") and _replicates(c3, f"k{i}", "n3"):
                    return False
            return True

        wait_for(caught_up, "n3 to catch up through hints and anti-entropy", timeout=60)
        # Backup of the secured cluster with the script.
        dest = os.path.join(self.dir, "backup")
        env = dict(os.environ, RINGKV_PASSWORD="a-pass")
        p = subprocess.run([os.path.join(SCRIPTS, "kv-backup"), "--tls", "--tls-ca", ca.cert,
                            "--user", "root", nodes[0].address, dest],
                           capture_output=True, text=True, timeout=120, env=env)
        self.assertEqual(p.returncode, 0, p.stderr)
        with open(os.path.join(dest, "manifest.json")) as f:
            self.assertEqual(len(json.load(f)["nodes"]), 3)

    def test_wrong_secret_and_untrusted_certificate_kept_out(self):
        ca = TestCA(self.dir)
        other_ca = TestCA(self.dir, "other")
        secret = self.write_private("secret", "the-right-secret-0123456789")
        wrong = self.write_private("wrong", "a-wrong-secret-0123456789")
        ports = free_ports(3)
        n1 = self.start("n1", ports[0], self.cluster_args(ca, "n1", ports, secret))
        n2 = self.start("n2", ports[1], self.cluster_args(ca, "n2", ports, wrong))
        # n3's certificate is from a CA the others do not trust (and it trusts theirs).
        crt, key = other_ca.issue("n3")
        cluster = ",".join(f"n{i + 1}=127.0.0.1:{p}" for i, p in enumerate(ports))
        n3 = self.start("n3", ports[2], ["--cluster", cluster, "--tls-cert", crt, "--tls-key", key,
                                         "--tls-ca", ca.cert, "--cluster-secret-file", secret])
        c = self.tls_connect(ports[0], ca.cert)

        def status():
            return {n["id"]: n["status"] for n in c.call({"op": "cluster"})["nodes"]}

        wait_for(lambda: "peer authentication failed" in n1.log(), "n1 to log the wrong secret")
        wait_for(lambda: "peer authentication" in n2.log(), "n2 to log the wrong secret")
        wait_for(lambda: "certificate" in n1.log(), "n1 to log the untrusted certificate")
        wait_for(lambda: status()["n2"] == "down" and status()["n3"] == "down",
                 "n2 and n3 seen down by n1")
        # n1 still serves (N=3 with two peers out: quorum writes are unavailable, reads of
        # nothing answer): it did not crash.
        self.assertTrue(c.call({"op": "ping"})["ok"])
        self.assertIsNone(n1.proc.poll())


def _replicates(line, key, node):
    return node in line.call({"op": "locate", "key": key})["replicas"]


def main():
    global BIN, SCRIPTS
    parser = argparse.ArgumentParser()
    parser.add_argument("--bin", required=True)
    parser.add_argument("--scripts", default=os.path.join(os.path.dirname(__file__),
                                                          "..", "..", "scripts"))
    args, rest = parser.parse_known_args()
    BIN = os.path.abspath(args.bin)
    SCRIPTS = os.path.abspath(args.scripts)
    unittest.main(argv=[sys.argv[0]] + rest, verbosity=2)


if __name__ == "__main__":
    main()
