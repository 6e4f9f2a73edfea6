#!/usr/bin/env bash
# The test command: installs what the tests need (Debian packages), then runs every test.
# Tests start real servers (redis-server, memcached, an SMTP server, Alertmanager) on
# ephemeral loopback ports and compare medic with promtool, so those must be installed.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
command -v redis-server >/dev/null || need+=(redis-server)
command -v memcached >/dev/null || need+=(memcached)
/usr/bin/python3 -c 'import aiosmtpd' 2>/dev/null || need+=(python3-aiosmtpd)
command -v promtool >/dev/null || need+=(prometheus)
command -v prometheus-alertmanager >/dev/null || need+=(prometheus-alertmanager)
command -v systemd-analyze >/dev/null || need+=(systemd)
command -v ps >/dev/null || need+=(procps)
command -v openssl >/dev/null || need+=(openssl)
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then SUDO=sudo; else SUDO=; fi
  echo "installing: ${need[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
# Debian starts the packaged daemons on their default ports; the tests start their own.
for svc in redis-server memcached prometheus prometheus-alertmanager; do
  (command -v systemctl >/dev/null && systemctl stop "$svc" 2>/dev/null) || true
done

cargo test --all-targets "$@"
# The PromQL conformance counts per file (the run above only says pass/fail).
cargo test --test promql_conformance "$@" -- --nocapture
