#!/usr/bin/python3
"""medic's footprint and reaction time, measured from outside like a peer tool would be.

  idle     RSS and CPU of `medic run -c config/medic.yaml` over a window (default 60 s).
           Goal: < 12 MB RSS, < 1 % of one core.
  latency  fault-to-action: a loopback HTTP target flips to failing at a recorded time; an
           exec plugin records when medic calls it. 1 s probe interval, 1 s rule group.
           Goal: median < 0.6 s, worst < 1.2 s (Monit 5.33 at a 1 s cycle: ~0.9 s median).

Usage (from the repository root, after `cargo build --release`):
  /usr/bin/python3 benches/peers/medic_peers.py [idle|latency|all]
      [--binary target/release/medic] [--seconds 60] [--trials 20]
Standard library only. Prints a human summary and one JSON line per measurement.
"""

import argparse
import http.server
import json
import os
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_medic(binary, config_path, log_path):
    log = open(log_path, "w")
    proc = subprocess.Popen(
        [binary, "run", "-c", config_path, "--log-level", "warn"],
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=log,
    )
    return proc


def wait_http(url, deadline_s=30):
    end = time.time() + deadline_s
    while time.time() < end:
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                return r.read()
        except OSError:
            time.sleep(0.1)
    raise SystemExit(f"no answer from {url} within {deadline_s} s")


def stop(proc):
    proc.terminate()
    try:
        proc.wait(timeout=40)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    return proc.returncode


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def cpu_ticks(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    # utime and stime are fields 14 and 15 of stat(5); index from after the comm field
    return int(fields[11]) + int(fields[12])


def idle(binary, seconds):
    """The shipped config, unchanged but for the port (so it runs beside anything on 9464)."""
    with open(os.path.join(ROOT, "config", "medic.yaml")) as f:
        text = f.read()
    port = free_port()
    text = text.replace("listen_address: 127.0.0.1:9464", f"listen_address: 127.0.0.1:{port}")
    text = text.replace("../rules/host.yaml", os.path.join(ROOT, "rules", "host.yaml"))
    with tempfile.TemporaryDirectory() as d:
        cfg = os.path.join(d, "medic.yaml")
        with open(cfg, "w") as f:
            f.write(text)
        env_state = os.path.join(d, "state")
        os.makedirs(env_state)
        os.environ["STATE_DIRECTORY"] = env_state
        proc = start_medic(binary, cfg, os.path.join(d, "medic.log"))
        try:
            wait_http(f"http://127.0.0.1:{port}/healthz")
            time.sleep(5)  # first collector round and rule evaluation
            hz = os.sysconf("SC_CLK_TCK")
            t0, c0 = time.monotonic(), cpu_ticks(proc.pid)
            samples = []
            while time.monotonic() - t0 < seconds:
                samples.append(rss_kib(proc.pid))
                time.sleep(1)
            t1, c1 = time.monotonic(), cpu_ticks(proc.pid)
        finally:
            code = stop(proc)
    cpu_pct = 100.0 * (c1 - c0) / hz / (t1 - t0)
    result = {
        "measurement": "idle",
        "seconds": round(t1 - t0, 1),
        "rss_mib_max": round(max(samples) / 1024, 2),
        "rss_mib_mean": round(statistics.mean(samples) / 1024, 2),
        "cpu_percent_of_one_core": round(cpu_pct, 3),
        "exit_code": code,
    }
    print(
        f"idle over {result['seconds']} s: RSS max {result['rss_mib_max']} MiB "
        f"(mean {result['rss_mib_mean']}), CPU {result['cpu_percent_of_one_core']} % of one core "
        f"[goal < 12 MB, < 1 %]; exit {code}"
    )
    print(json.dumps(result))
    return result


class Target(http.server.BaseHTTPRequestHandler):
    failing = False

    def do_GET(self):
        code = 500 if Target.failing else 200
        self.send_response(code)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"no" if code == 500 else b"ok")

    def log_message(self, *args):
        pass


def latency(binary, trials):
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Target)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    target_url = f"http://127.0.0.1:{server.server_address[1]}/health"
    port = free_port()
    with tempfile.TemporaryDirectory() as d:
        calls = os.path.join(d, "calls.log")
        plugin = os.path.join(d, "plugin.sh")
        with open(plugin, "w") as f:
            # The call time first (ns since the epoch), then the protocol: read the request,
            # answer ok.
            f.write(f"#!/bin/sh\ndate +%s%N >> {calls}\ncat > /dev/null\necho '{{\"status\":\"ok\"}}'\n")
        os.chmod(plugin, 0o755)
        with open(os.path.join(d, "rules.yaml"), "w") as f:
            f.write(
                "groups:\n- name: bench\n  interval: 1s\n  rules:\n"
                "  - alert: TargetDown\n    expr: probe_success{probe=\"target\"} == 0\n"
                "    remediate:\n    - action: exec\n      target: plugin\n      cooldown: 1s\n"
            )
        with open(os.path.join(d, "medic.yaml"), "w") as f:
            f.write(
                f"global:\n  listen_address: 127.0.0.1:{port}\n  state_dir: {d}/state\n"
                f"collectors:\n  target:\n    type: http_probe\n    url: {target_url}\n"
                f"    interval: 1s\n    timeout: 900ms\n"
                f"actuators:\n  plugin:\n    type: exec\n    command: [{plugin}]\n    timeout: 10s\n"
                f"remedy:\n  max_actions_per_minute: 0\n"
                f"rule_files: [rules.yaml]\n"
            )
        proc = start_medic(binary, os.path.join(d, "medic.yaml"), os.path.join(d, "medic.log"))
        alerts_url = f"http://127.0.0.1:{port}/api/v1/alerts"
        lat = []
        try:
            wait_http(f"http://127.0.0.1:{port}/healthz")
            time.sleep(2.5)  # a few healthy probe rounds
            for i in range(trials):
                before = count_lines(calls)
                # Faults arrive at a random phase of the probe cycle.
                time.sleep(random.uniform(0, 1))
                t_fault = time.time_ns()
                Target.failing = True
                t_call = wait_call(calls, before, 30)
                lat.append((t_call - t_fault) / 1e9)
                Target.failing = False
                wait_resolved(alerts_url, 30)
                time.sleep(1.1)  # past the step's cooldown
        finally:
            code = stop(proc)
            server.shutdown()
    lat.sort()
    result = {
        "measurement": "fault_to_action",
        "trials": len(lat),
        "median_s": round(statistics.median(lat), 3),
        "p90_s": round(lat[int(0.9 * (len(lat) - 1))], 3),
        "worst_s": round(max(lat), 3),
        "best_s": round(min(lat), 3),
        "exit_code": code,
    }
    print(
        f"fault-to-action over {len(lat)} trials (1 s probe, 1 s group): median "
        f"{result['median_s']} s, p90 {result['p90_s']} s, worst {result['worst_s']} s, best "
        f"{result['best_s']} s [goal median < 0.6 s, worst < 1.2 s]; exit {code}"
    )
    print(json.dumps(result))
    return result


def count_lines(path):
    try:
        with open(path) as f:
            return sum(1 for _ in f)
    except FileNotFoundError:
        return 0


def wait_call(path, before, deadline_s):
    end = time.time() + deadline_s
    while time.time() < end:
        try:
            with open(path) as f:
                lines = f.read().split()
        except FileNotFoundError:
            lines = []
        if len(lines) > before:
            return int(lines[before])
        time.sleep(0.005)
    raise SystemExit("the plugin was not called in time")


def wait_resolved(url, deadline_s):
    end = time.time() + deadline_s
    while time.time() < end:
        with urllib.request.urlopen(url, timeout=2) as r:
            if not json.load(r)["data"]["alerts"]:
                return
        time.sleep(0.05)
    raise SystemExit("the alert did not resolve in time")


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("what", nargs="?", default="all", choices=["idle", "latency", "all"])
    p.add_argument("--binary", default=os.path.join(ROOT, "target", "release", "medic"))
    p.add_argument("--seconds", type=int, default=60)
    p.add_argument("--trials", type=int, default=20)
    a = p.parse_args()
    if not os.access(a.binary, os.X_OK):
        sys.exit(f"{a.binary} not found: run `cargo build --release` first")
    if a.what in ("idle", "all"):
        idle(a.binary, a.seconds)
    if a.what in ("latency", "all"):
        latency(a.binary, a.trials)


if __name__ == "__main__":
    main()
