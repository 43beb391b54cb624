#!/usr/bin/env python3
"""Membership end to end (PROTOCOL.md §10, issue #11) with real kvd processes.

A 3-node cluster takes writes from concurrent writers while a 4th node joins
(`--join`, then `membership` join + commit against a member that is not the
claimant, so the forward is exercised) and later while a node leaves. Every
acknowledged write must be readable with r="all" afterwards, quorum reads
must never go back in time for a key, and every node's `locate` must agree.
Nodes run on 127.0.0.1 and are killed by PID when a test ends. Every wait
and every load loop is bounded.

    membership_test.py --bin BUILD/bin [unittest args]
"""

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import unittest

BIN = None
SCRIPTS = None
WAIT_S = 60


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


class Kvd:
    def __init__(self, workdir, node_id, port, args):
        self.node_id = node_id
        self.port = port
        self.address = f"127.0.0.1:{port}"
        self.log_path = os.path.join(workdir, node_id + ".log")
        self.data = os.path.join(workdir, "data-" + node_id)
        self.args = args
        self.proc = None
        self.env = {}  # extra environment (RINGKV_CRASH_AT) for the next start

    def start(self):
        log = open(self.log_path, "a")
        self.proc = subprocess.Popen(
            [os.path.join(BIN, "kvd"), "--node-id", self.node_id, "--listen", self.address,
             "--data-dir", self.data, "--partitions", "16"] + self.args,
            stdout=log, stderr=subprocess.STDOUT, env=dict(os.environ, **self.env))
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
    def __init__(self, port, timeout=10):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.buf = b""

    def call(self, obj):
        self.sock.sendall((json.dumps(obj) + "\n").encode())
        while b"\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("closed by the server")
            self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        return json.loads(line.decode())

    def close(self):
        self.sock.close()


class Load:
    """Writers and readers over a small key set, checked Jepsen-style."""

    def __init__(self, ports, writers=4, readers=2, keys=40):
        self.ports = ports
        self.keys = [f"k{i}" for i in range(keys)]
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.acked = {}      # key -> highest acknowledged value
        self.errors = []     # client-visible errors (counted, a few are allowed)
        self.violations = []
        self.writes = 0
        self.threads = ([threading.Thread(target=self.writer, args=(w,)) for w in range(writers)] +
                        [threading.Thread(target=self.reader, args=(r,)) for r in range(readers)])

    def start(self):
        for t in self.threads:
            t.start()

    def finish(self):
        self.stop.set()
        for t in self.threads:
            t.join(timeout=WAIT_S)

    def writer(self, w):
        line = Line(self.ports[w % len(self.ports)])
        n = 0
        deadline = time.monotonic() + 300
        while not self.stop.is_set() and time.monotonic() < deadline:
            n += 1
            key = self.keys[(w * 7 + n) % len(self.keys)]
            value = w * 1_000_000 + n  # increasing per writer
            try:
                r = line.call({"op": "put", "key": key, "value": {"w": w, "n": value}})
            except (OSError, ConnectionError) as e:
                with self.lock:
                    self.errors.append(str(e))
                line = Line(self.ports[(w + n) % len(self.ports)])
                continue
            with self.lock:
                if r.get("ok"):
                    self.writes += 1
                    self.acked.setdefault(key, set()).add(json.dumps({"w": w, "n": value}))
                else:
                    self.errors.append(r["error"]["code"] + ": " + r["error"]["message"])
        line.close()

    def reader(self, r):
        line = Line(self.ports[r % len(self.ports)])
        last = {}
        deadline = time.monotonic() + 300
        i = 0
        while not self.stop.is_set() and time.monotonic() < deadline:
            i += 1
            key = self.keys[(r * 13 + i) % len(self.keys)]
            with self.lock:
                known = set(self.acked.get(key, ()))
            try:
                resp = line.call({"op": "get", "key": key})
            except (OSError, ConnectionError) as e:
                with self.lock:
                    self.errors.append(str(e))
                line = Line(self.ports[(r + i) % len(self.ports)])
                continue
            if not resp.get("ok"):
                with self.lock:
                    self.errors.append(resp["error"]["code"])
                continue
            if known and not resp.get("found"):
                with self.lock:
                    self.violations.append(f"{key}: not found after acknowledged writes")
                continue
            if resp.get("found"):
                version = resp["version"]
                if key in last and version < last[key] and len(version) == len(last[key]):
                    with self.lock:
                        self.violations.append(f"{key}: version went back {last[key]} -> {version}")
                last[key] = max(version, last.get(key, ""))
        line.close()


class MembershipTest(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="ringkv-membership-", dir=os.environ.get("TMPDIR"))
        self.nodes = {}

    def tearDown(self):
        for n in self.nodes.values():
            n.kill()
        if self._outcome_failed():
            for n in self.nodes.values():
                sys.stderr.write(f"---- {n.node_id} log\n{n.log()[-6000:]}\n")
        shutil.rmtree(self.dir, ignore_errors=True)

    def _outcome_failed(self):
        result = getattr(self._outcome, "result", None)
        errors = getattr(result, "errors", []) + getattr(result, "failures", [])
        return any(test is self for test, _ in errors)

    def start(self, node_id, port, args):
        n = Kvd(self.dir, node_id, port, args)
        self.nodes[node_id] = n
        n.start()
        wait_for(n.listening, node_id + " to listen")
        return n

    def call(self, node_id, obj):
        line = Line(self.nodes[node_id].port, timeout=30)
        try:
            return line.call(obj)
        finally:
            line.close()

    def wait_change_done(self, via):
        def done():
            r = self.call(via, {"op": "membership", "action": "transfers"})
            return r.get("ok") and r["moves_pending"] == 0 and r["phase"] == "stable"
        wait_for(done, "the change to finish", timeout=120)

    def all_up(self, via, members):
        states = {n["id"]: n["status"] for n in self.call(via, {"op": "cluster"})["nodes"]}
        return all(states.get(m) == "up" for m in members)

    def check_converged(self, members, load):
        for m in members:
            wait_for(lambda m=m: self.all_up(m, members), f"{m} to see every member up")
        # Every node agrees on the map and on where keys live.
        epochs = set()
        for m in members:
            wait_for(lambda m=m: self.call(m, {"op": "cluster"})["epoch"] ==
                     self.call(members[0], {"op": "cluster"})["epoch"], m + " to catch up")
            epochs.add(self.call(m, {"op": "cluster"})["epoch"])
        self.assertEqual(len(epochs), 1)
        for key in load.keys:
            where = {json.dumps(self.call(m, {"op": "locate", "key": key})["replicas"])
                     for m in members}
            self.assertEqual(len(where), 1, f"locate of {key} differs: {where}")
            r = self.call(members[0], {"op": "get", "key": key, "r": "all"})
            self.assertTrue(r["ok"], r)
            acked = load.acked.get(key)
            if acked:
                self.assertTrue(r["found"], key)
                # The newest acknowledged write of the key's last writer is there
                # or a newer one: the value read was acknowledged.
                self.assertIn(r["value"], [json.loads(v) for v in acked], key)

    def test_join_then_leave_under_load(self):
        ports = free_ports(4)
        spec = ",".join(f"n{i + 1}=127.0.0.1:{ports[i]}" for i in range(3))
        for i in range(3):
            self.start(f"n{i + 1}", ports[i], ["--cluster", spec, "--transfer-mb-per-s", "8"])
        wait_for(lambda: all(n["status"] == "up" for n in self.call("n1", {"op": "cluster"})["nodes"]),
                 "the cluster to be up")
        # Some data before the change, so that there is something to copy.
        line = Line(ports[0])
        for i in range(2000):
            self.assertTrue(line.call({"op": "put", "key": f"pre{i}", "value": i})["ok"])
        line.close()
        self.start("n4", ports[3], ["--join", f"127.0.0.1:{ports[0]}"])
        waiting = self.call("n4", {"op": "put", "key": "x", "value": 1})
        self.assertEqual(waiting["error"]["code"], "unavailable")

        load = Load(ports[:3])
        load.start()
        try:
            # Staged on n2, which forwards to the claimant n1.
            r = self.call("n2", {"op": "membership", "action": "join", "node": "n4",
                                 "address": f"127.0.0.1:{ports[3]}"})
            self.assertTrue(r["ok"], r)
            self.assertGreater(len(r["moves"]), 0)
            self.assertTrue(all(m["to"] == "n4" for m in r["moves"]))
            stale = self.call("n3", {"op": "membership", "action": "commit", "epoch": 0})
            self.assertFalse(stale["ok"])
            self.assertIn("plan_changed", stale["error"]["message"])
            committed = self.call("n3", {"op": "membership", "action": "commit",
                                         "epoch": r["epoch"]})
            self.assertTrue(committed["ok"], committed)
            again = self.call("n2", {"op": "membership", "action": "commit"})
            self.assertFalse(again["ok"])  # the second commit of one plan is refused
            self.wait_change_done("n1")
        finally:
            load.finish()
        self.assertEqual(load.violations, [])
        self.assertGreater(load.writes, 0)
        members = ["n1", "n2", "n3", "n4"]
        self.check_converged(members, load)
        c = self.call("n4", {"op": "cluster"})
        self.assertEqual({n["id"]: n["state"] for n in c["nodes"]},
                         {"n1": "normal", "n2": "normal", "n3": "normal", "n4": "normal"})
        for i in range(0, 2000, 97):
            r = self.call("n4", {"op": "get", "key": f"pre{i}", "r": "all"})
            self.assertEqual(r.get("value"), i, r)
        stats = self.call("n4", {"op": "stats"})["stats"]
        self.assertGreater(stats["membership"]["moves_done"], 0)
        self.assertGreater(stats["membership"]["transfer_bytes_in"], 0)

        # n2 leaves while writes go on; its partitions move to the others.
        load = Load([ports[0], ports[2], ports[3]])
        load.start()
        try:
            r = self.call("n4", {"op": "membership", "action": "leave", "node": "n2"})
            self.assertTrue(r["ok"], r)
            self.assertTrue(all(m["from"] == "n2" for m in r["moves"]))
            self.assertTrue(self.call("n1", {"op": "membership", "action": "commit"})["ok"])
            self.wait_change_done("n1")
        finally:
            load.finish()
        self.assertEqual(load.violations, [])
        self.check_converged(["n1", "n3", "n4"], load)
        states = {n["id"]: n["state"] for n in self.call("n1", {"op": "cluster"})["nodes"]}
        self.assertEqual(states["n2"], "left")
        wait_for(lambda: self.call("n2", {"op": "stats"})["stats"]["partitions_replicated"] == 0,
                 "n2 to hold nothing")

    def start_cluster(self, count, extra=()):
        ports = free_ports(count + 2)
        spec = ",".join(f"n{i + 1}=127.0.0.1:{ports[i]}" for i in range(count))
        for i in range(count):
            self.start(f"n{i + 1}", ports[i], ["--cluster", spec] + list(extra))
        wait_for(lambda: all(n["status"] == "up"
                             for n in self.call("n1", {"op": "cluster"})["nodes"]),
                 "the cluster to be up")
        return ports

    def fill(self, port, count, prefix="pre", size=10):
        line = Line(port)
        for i in range(count):
            r = line.call({"op": "put", "key": f"{prefix}{i}", "value": "x" * size + str(i)})
            self.assertTrue(r["ok"], r)
        line.close()

    def change(self, via, request, commit_via=None):
        r = self.call(via, dict({"op": "membership"}, **request))
        self.assertTrue(r["ok"], r)
        c = self.call(commit_via or via, {"op": "membership", "action": "commit"})
        self.assertTrue(c["ok"], c)
        return r

    def test_replace_a_killed_node_then_remove_a_dead_one(self):
        ports = self.start_cluster(4)
        self.fill(ports[0], 1500)
        self.nodes["n3"].kill()
        wait_for(lambda: {n["id"]: n["status"] for n in self.call("n1", {"op": "cluster"})["nodes"]}
                 ["n3"] == "down", "n3 to be down")
        self.start("n5", ports[4], ["--join", f"127.0.0.1:{ports[1]}"])
        load = Load([ports[0], ports[1], ports[3]])
        load.start()
        try:
            r = self.change("n2", {"action": "replace", "node": "n3", "new_node": "n5",
                                   "address": f"127.0.0.1:{ports[4]}"})
            self.assertTrue(all(m["from"] == "n3" and m["to"] == "n5" for m in r["moves"]), r)
            self.wait_change_done("n1")
        finally:
            load.finish()
        self.assertEqual(load.violations, [])
        members = ["n1", "n2", "n4", "n5"]
        self.check_converged(members, load)
        for i in range(0, 1500, 61):
            r = self.call("n5", {"op": "get", "key": f"pre{i}", "r": "all"})
            self.assertEqual(r.get("value"), "x" * 10 + str(i), r)

        # n4 dies for good: remove it; its replicas are rebuilt from the others.
        self.nodes["n4"].kill()
        wait_for(lambda: {n["id"]: n["status"] for n in self.call("n1", {"op": "cluster"})["nodes"]}
                 ["n4"] == "down", "n4 to be down")
        load = Load([ports[0], ports[1], ports[4]])
        load.start()
        try:
            self.change("n5", {"action": "remove", "node": "n4"})
            self.wait_change_done("n1")
        finally:
            load.finish()
        self.assertEqual(load.violations, [])
        self.check_converged(["n1", "n2", "n5"], load)
        for i in range(0, 1500, 61):
            r = self.call("n1", {"op": "get", "key": f"pre{i}", "r": "all"})
            self.assertEqual(r.get("value"), "x" * 10 + str(i), r)

    def test_target_killed_during_the_copy_copies_again(self):
        # Slow copies (1 MiB/s), so that n4 dies in the middle of them.
        ports = self.start_cluster(3, ["--transfer-mb-per-s", "1"])
        self.fill(ports[0], 6000, size=300)
        self.start("n4", ports[3], ["--join", f"127.0.0.1:{ports[0]}",
                                    "--transfer-mb-per-s", "1"])
        load = Load(ports[:3])
        load.start()
        try:
            self.change("n1", {"action": "join", "node": "n4",
                               "address": f"127.0.0.1:{ports[3]}"})
            wait_for(lambda: any(t["bytes_done"] > 0 for t in
                                 self.call("n1", {"op": "membership",
                                                  "action": "transfers"})["transfers"]),
                     "a copy to be under way")
            self.assertNotEqual(self.call("n1", {"op": "membership", "action": "transfers"})
                                ["moves_pending"], 0)
            self.nodes["n4"].kill()
            self.nodes["n4"].start()  # same data dir: it resumes as a member
            wait_for(self.nodes["n4"].listening, "n4 to listen again")
            self.wait_change_done("n1")
        finally:
            load.finish()
        self.assertEqual(load.violations, [])
        self.check_converged(["n1", "n2", "n3", "n4"], load)
        for i in range(0, 6000, 211):
            r = self.call("n4", {"op": "get", "key": f"pre{i}", "r": "all"})
            self.assertEqual(r.get("value"), "x" * 300 + str(i), r)

    def test_two_commits_at_once_exactly_one_wins(self):
        ports = self.start_cluster(3)
        self.start("n4", ports[3], ["--join", f"127.0.0.1:{ports[0]}"])
        r = self.call("n3", {"op": "membership", "action": "join", "node": "n4",
                             "address": f"127.0.0.1:{ports[3]}"})
        self.assertTrue(r["ok"], r)
        results = {}

        def commit(via):
            results[via] = self.call(via, {"op": "membership", "action": "commit",
                                           "epoch": r["epoch"]})
        threads = [threading.Thread(target=commit, args=(v,)) for v in ("n2", "n3")]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=WAIT_S)
        oks = [v for v, res in results.items() if res.get("ok")]
        self.assertEqual(len(oks), 1, results)
        loser = results["n2" if oks[0] == "n3" else "n3"]
        self.assertIn(loser["error"]["code"], ("bad_request",))
        self.wait_change_done("n1")

    def test_partition_moving_away_and_back_serves_no_stale_cached_record(self):
        ports = self.start_cluster(3)
        keys = [f"c{i}" for i in range(200)]
        line = Line(ports[0])
        for k in keys:
            self.assertTrue(line.call({"op": "put", "key": k, "value": "old"})["ok"])
        # Every replica caches "old" (local reads fill the record cache).
        for n in ("n1", "n2", "n3"):
            for k in keys:
                self.assertEqual(self.call(n, {"op": "get", "key": k, "local": True})["value"], "old")
        self.start("n4", ports[3], ["--join", f"127.0.0.1:{ports[0]}"])
        self.change("n1", {"action": "join", "node": "n4", "address": f"127.0.0.1:{ports[3]}"})
        self.wait_change_done("n1")
        for k in keys:
            self.assertTrue(line.call({"op": "put", "key": k, "value": "new"})["ok"])
        self.change("n1", {"action": "leave", "node": "n4"})
        self.wait_change_done("n1")
        line.close()
        # The partitions came back to n1..n3: every replica of every key
        # answers the new value from its own store and cache.
        for k in keys:
            replicas = self.call("n1", {"op": "locate", "key": k})["replicas"]
            for n in replicas:
                r = self.call(n, {"op": "get", "key": k, "local": True})
                self.assertEqual(r.get("value"), "new", f"{k} on {n}: {r}")

    def test_grow_to_five_with_a_backup_from_before_restoring_the_old_map(self):
        ports = self.start_cluster(3)
        self.fill(ports[0], 500)
        backup = os.path.join(self.dir, "backup")
        subprocess.run([os.path.join(SCRIPTS, "kv-backup"), f"127.0.0.1:{ports[0]}", backup],
                       check=True, capture_output=True, timeout=120,
                       env=dict(os.environ, RINGKV_KVCTL=os.path.join(BIN, "kvctl")))
        with open(os.path.join(backup, "manifest.json")) as f:
            manifest = json.load(f)
        self.assertEqual(manifest["epoch"], 1)
        self.assertEqual([m["id"] for m in manifest["members"]], ["n1", "n2", "n3"])
        for n, port in (("n4", ports[3]), ("n5", ports[4])):
            self.start(n, port, ["--join", f"127.0.0.1:{ports[0]}"])
            self.change("n1", {"action": "join", "node": n, "address": f"127.0.0.1:{port}"})
            self.wait_change_done("n1")
        load = Load(ports[:5])
        load.start()
        wait_for(lambda: load.writes >= 300, "writes on the 5-node map")
        load.finish()
        self.assertEqual(load.violations, [])
        self.check_converged(["n1", "n2", "n3", "n4", "n5"], load)
        slots = {m: self.call(m, {"op": "stats"})["stats"]["partitions_replicated"]
                 for m in ("n1", "n2", "n3", "n4", "n5")}
        self.assertTrue(all(abs(n - 16 * 3 / 5) <= 1 for n in slots.values()), slots)

        # The backup predates both joins: restored, it is the 3-node cluster
        # of epoch 1 with its data (on the same addresses, the others stopped).
        for n in self.nodes.values():
            n.kill()
        self.nodes = {}
        spec = ",".join(f"n{i + 1}=127.0.0.1:{ports[i]}" for i in range(3))
        for i in range(3):
            node_id = f"n{i + 1}"
            data = os.path.join(self.dir, "restored-" + node_id)
            subprocess.run([os.path.join(SCRIPTS, "kv-restore"), backup, node_id, data],
                           check=True, capture_output=True, timeout=120,
                           env=dict(os.environ, RINGKV_KVCTL=os.path.join(BIN, "kvctl")))
            k = Kvd(self.dir, node_id, ports[i], ["--cluster", spec])
            k.data = data
            self.nodes[node_id] = k
            k.start()
            wait_for(k.listening, node_id + " to listen")
        wait_for(lambda: self.all_up("n2", ["n1", "n2", "n3"]), "the restored cluster to be up")
        c = self.call("n1", {"op": "cluster"})
        self.assertEqual(c["epoch"], 1)
        self.assertEqual([n["id"] for n in c["nodes"]], ["n1", "n2", "n3"])
        for i in range(0, 500, 37):
            r = self.call("n2", {"op": "get", "key": f"pre{i}", "r": "all"})
            self.assertEqual(r.get("value"), "x" * 10 + str(i), r)

    def test_source_killed_during_the_copy(self):
        # n3 dies while n4 copies from it: its moves copy from the other
        # replicas (n1, the claimant, stays up).
        ports = self.start_cluster(3, ["--transfer-mb-per-s", "1"])
        self.fill(ports[0], 6000, size=300)
        self.start("n4", ports[3], ["--join", f"127.0.0.1:{ports[0]}",
                                    "--transfer-mb-per-s", "1"])
        load = Load(ports[:2])
        load.start()
        try:
            self.change("n1", {"action": "join", "node": "n4",
                               "address": f"127.0.0.1:{ports[3]}"})
            wait_for(lambda: any(t["bytes_done"] > 0 for t in
                                 self.call("n1", {"op": "membership",
                                                  "action": "transfers"})["transfers"]),
                     "a copy to be under way")
            self.nodes["n3"].kill()
            self.wait_change_done("n1")
        finally:
            load.finish()
        self.assertEqual(load.violations, [])
        # n3 comes back with the map it had: it catches up and drops what it gave away.
        self.nodes["n3"].start()
        wait_for(self.nodes["n3"].listening, "n3 to listen again")
        epoch = self.call("n1", {"op": "cluster"})["epoch"]
        wait_for(lambda: self.call("n3", {"op": "cluster"})["epoch"] == epoch, "n3 to catch up")
        wait_for(lambda: self.call("n3", {"op": "stats"})["stats"]["partitions_replicated"] == 12,
                 "n3 to hold its share")
        self.check_converged(["n1", "n2", "n3", "n4"], load)
        for i in range(0, 6000, 211):
            r = self.call("n4", {"op": "get", "key": f"pre{i}", "r": "all"})
            self.assertEqual(r.get("value"), "x" * 300 + str(i), r)

    def test_node_paused_across_a_commit_is_fenced_then_catches_up(self):
        ports = self.start_cluster(3)
        self.fill(ports[0], 300)
        self.start("n4", ports[3], ["--join", f"127.0.0.1:{ports[0]}"])
        # n3 is cut off (SIGSTOP) for the whole change: it keeps epoch 1.
        self.nodes["n3"].proc.send_signal(signal.SIGSTOP)
        wait_for(lambda: {n["id"]: n["status"] for n in self.call("n1", {"op": "cluster"})["nodes"]}
                 ["n3"] == "down", "n3 to be seen down")
        self.change("n1", {"action": "join", "node": "n4", "address": f"127.0.0.1:{ports[3]}"})
        self.wait_change_done("n1")
        self.nodes["n3"].proc.send_signal(signal.SIGCONT)
        # Its clients' requests, routed by epoch 1, are fenced and retried
        # under the new map: no error reaches them.
        line = Line(ports[2], timeout=30)
        for i in range(200):
            r = line.call({"op": "put", "key": f"late{i}", "value": i})
            self.assertTrue(r["ok"], r)
        for i in range(300):
            r = line.call({"op": "get", "key": f"pre{i}"})
            self.assertEqual(r.get("value"), "x" * 10 + str(i), r)
        line.close()
        epoch = self.call("n1", {"op": "cluster"})["epoch"]
        self.assertEqual(self.call("n3", {"op": "cluster"})["epoch"], epoch)
        # Whether n3's first requests met a fence or its hellos caught it up
        # first is a race; either way no client saw an error (above).
        fenced = sum(self.call(n, {"op": "stats"})["stats"]["fenced_requests"]
                     for n in ("n1", "n2", "n3", "n4"))
        retried = self.call("n3", {"op": "stats"})["stats"]["stale_epoch_retries"]
        sys.stderr.write(f"[membership] paused node: fenced={fenced} retried={retried}\n")
        wait_for(lambda: self.all_up("n4", ["n1", "n2", "n3", "n4"]), "n4 to see n3 up")
        for i in range(0, 200, 7):
            r = self.call("n4", {"op": "get", "key": f"late{i}", "r": "all"})
            self.assertEqual(r.get("value"), i, r)

    def crash_during_join(self, point, victim):
        """Joins n4 with `victim` set to SIGKILL itself at crash point `point`
        (server/cluster_manager.cc); restarts it once it died and checks the
        join completes with every acknowledged write in place."""
        ports = self.start_cluster(3)
        self.fill(ports[0], 1500)
        self.start("n4", ports[3], ["--join", f"127.0.0.1:{ports[0]}"])
        node = self.nodes[victim]
        node.kill()
        node.env = {"RINGKV_CRASH_AT": point}
        node.start()
        wait_for(node.listening, victim + " to listen")
        wait_for(lambda: self.all_up("n2", ["n1", "n2", "n3"]), "the cluster to be up")
        load = Load([ports[i] for i in range(3) if f"n{i + 1}" != victim] or ports[:1])
        load.start()
        try:
            r = self.call("n2", {"op": "membership", "action": "join", "node": "n4",
                                 "address": f"127.0.0.1:{ports[3]}"})
            self.assertTrue(r["ok"], r)
            try:
                self.call("n2", {"op": "membership", "action": "commit"})
            except (OSError, ConnectionError):
                pass  # the claimant may die before it answers (commit_persisted)
            wait_for(lambda: node.proc.poll() is not None, f"{victim} to die at {point}")
            self.assertEqual(node.proc.returncode, -signal.SIGKILL)
            self.assertIn("crash point " + point, node.log())
            node.env = {}
            node.start()
            wait_for(node.listening, victim + " to listen again")
            self.wait_change_done("n1")
        finally:
            load.finish()
        self.assertEqual(load.violations, [])
        self.check_converged(["n1", "n2", "n3", "n4"], load)
        for i in range(0, 1500, 53):
            r = self.call("n4", {"op": "get", "key": f"pre{i}", "r": "all"})
            self.assertEqual(r.get("value"), "x" * 10 + str(i), r)

    def test_claimant_killed_after_persisting_the_commit(self):
        self.crash_during_join("commit_persisted", "n1")

    def test_target_killed_after_importing_a_partition(self):
        self.crash_during_join("copy_ingested", "n4")

    def test_replica_killed_when_reads_switch(self):
        self.crash_during_join("read_new_installed", "n2")

    def test_a_disagreeing_cluster_flag_is_logged_and_ignored(self):
        ports = self.start_cluster(3)
        n1 = self.nodes["n1"]
        n1.kill()
        n1.args = ["--cluster", f"n1=127.0.0.1:{ports[0]},n2=127.0.0.1:{ports[1]}"]
        n1.start()
        wait_for(n1.listening, "n1 to listen again")
        c = self.call("n1", {"op": "cluster"})
        self.assertEqual([n["id"] for n in c["nodes"]], ["n1", "n2", "n3"])
        self.assertEqual(c["epoch"], 1)
        self.assertIn("the stored map is used and the flag ignored", n1.log())


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--bin", required=True)
    parser.add_argument("--scripts", required=True)
    args, rest = parser.parse_known_args()
    BIN = args.bin
    SCRIPTS = args.scripts
    unittest.main(argv=[sys.argv[0]] + rest)
