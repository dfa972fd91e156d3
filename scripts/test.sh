#!/usr/bin/env bash
# The test command. On a fresh machine of this project's kind it:
#   1. brings up MariaDB, Mosquitto and the Kafka-compatible broker (Tansu;
#      built once per machine into ~/.cache/kiosk-to-kafka, ~10 min);
#   2. runs every test of the workspace: unit tests, integration tests
#      against the real services, and fault tests that kill and restart
#      processes (each test that needs a service fails loudly if it is missing).
#   3. with --kiosk instead: builds the agent for aarch64 and armv7 (Docker-free,
#      scripts/cross-build.sh) and runs the agent's tests under qemu-user.
# The end-to-end fault suite (gateway/tests/e2e.rs) runs each scenario
# KTK_E2E_REPEAT times (default 3).
# Services it started are stopped again when CI=true or KTK_STOP_SERVICES=1;
# otherwise they keep running for the next run (scripts/services-down.sh stops them).
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/services-up.sh
if [ "${CI:-}" = "true" ] || [ "${KTK_STOP_SERVICES:-}" = "1" ]; then
  trap 'bash scripts/services-down.sh' EXIT
fi

if [ "${1:-}" = "--kiosk" ]; then
  for target in aarch64-unknown-linux-gnu armv7-unknown-linux-gnueabihf; do
    bash scripts/cross-build.sh "$target" --test
  done
  exit 0
fi

cargo test --workspace --locked "$@"
