#!/usr/bin/env python3
"""Example medic exec plugin (protocol v1): restart a systemd unit.

Reads one JSON request on stdin, restarts `params.unit` with `systemctl restart`, answers
one JSON object on stdout. Only units named with --allow may be restarted, so a templated
`unit` param can never pick an arbitrary service. Honours "dry_run": true.

medic.yaml:
  actuators:
    restart-unit:
      type: exec
      command: ["/usr/lib/medic/plugins/restart-unit.py", "--allow", "inference.service"]
      timeout: 60s
      supports_dry_run: true
rule:
  remediate:
  - {action: restart, target: restart-unit, params: {unit: inference.service}, cooldown: 10m}
"""
import argparse
import json
import subprocess
import sys


def answer(status, message, **data):
    print(json.dumps({"status": status, "message": message, "data": data}))
    sys.exit(0)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--allow", action="append", default=[], help="a unit that may be restarted")
    ap.add_argument("--systemctl", default="systemctl", help="systemctl executable")
    args = ap.parse_args()

    req = json.load(sys.stdin)
    if req.get("version") != 1:
        answer("failed", f"unsupported protocol version {req.get('version')!r}")
    unit = (req.get("params") or {}).get("unit")
    if not isinstance(unit, str) or not unit:
        answer("failed", "params.unit is required")
    if unit not in args.allow:
        answer("failed", f"unit {unit!r} is not in the --allow list")
    if req.get("dry_run"):
        answer("noop", f"dry run: would restart {unit}", unit=unit)
    # argv list, no shell: the unit name is passed as one argument
    try:
        p = subprocess.run([args.systemctl, "restart", "--", unit],
                           capture_output=True, text=True, timeout=50)
    except (OSError, subprocess.TimeoutExpired) as e:
        answer("failed", f"systemctl: {e}", unit=unit)
    sys.stderr.write(p.stderr)
    if p.returncode != 0:
        answer("failed", f"systemctl restart {unit} exited {p.returncode}", unit=unit)
    answer("ok", f"restarted {unit}", unit=unit)


if __name__ == "__main__":
    main()
