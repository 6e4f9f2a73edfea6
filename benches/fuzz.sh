#!/usr/bin/env bash
# Runs the fuzz driver (fuzz/main.rs) on one target, or on all of them one after another,
# for MINUTES in all (fractions allowed: 0.5). Findings land in target/fuzz/<target>/ and
# make the exit status 1. The build is the debug profile on purpose: overflow checks and
# debug assertions turn silent bugs into findings.
#   benches/fuzz.sh TARGET|all MINUTES [SEED]
# Targets: config rules promql template exposition_text exposition_openmetrics exec_reply
set -euo pipefail
cd "$(dirname "$0")/.."
target=${1:?usage: benches/fuzz.sh TARGET|all MINUTES [SEED]}
minutes=${2:?usage: benches/fuzz.sh TARGET|all MINUTES [SEED]}
seed=${3:-$(date +%s)}
seconds=$(awk -v m="$minutes" 'BEGIN { printf "%d", m * 60 }')
echo "fuzz: $target for ${minutes} min, seed $seed"
cargo build --quiet --example fuzz
exec target/debug/examples/fuzz "$target" --seconds "$seconds" --seed "$seed"
