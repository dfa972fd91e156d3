#!/usr/bin/env bash
# Docker-free kiosk build: cross-compile the agent for an ARM board.
#
#   scripts/cross-build.sh TARGET [--test]
#
# TARGET is aarch64-unknown-linux-gnu (64-bit boards) or
# armv7-unknown-linux-gnueabihf (32-bit boards). The script installs what is
# missing (the rustup target; Debian's cross gcc and qemu-user via apt-get),
# builds `agent` with the `kiosk` profile (fat LTO, opt-level s, stripped,
# panic=abort), checks that it links no shared library beyond the C runtime
# (glibc and libgcc), and prints its size. The binary is
#   target/TARGET/kiosk/agent
#
# --test   also runs the agent's own test suite for TARGET under qemu-user
#          (the runner in .cargo/config.toml); the tests' child processes
#          (the agent program itself) run under qemu too, via KTK_TARGET_RUNNER.
#          Needs Mosquitto on 127.0.0.1:1883 (scripts/services-up.sh).
set -euo pipefail
cd "$(dirname "$0")/.."

target=${1:-}
shift || true
run_tests=0
for a in "$@"; do
  case "$a" in
    --test) run_tests=1 ;;
    *) echo "unknown option $a" >&2; exit 2 ;;
  esac
done

case "$target" in
  aarch64-unknown-linux-gnu)
    gcc=aarch64-linux-gnu-gcc; gcc_pkg=gcc-aarch64-linux-gnu
    qemu="qemu-aarch64 -L /usr/aarch64-linux-gnu" ;;
  armv7-unknown-linux-gnueabihf)
    gcc=arm-linux-gnueabihf-gcc; gcc_pkg=gcc-arm-linux-gnueabihf
    qemu="qemu-arm -L /usr/arm-linux-gnueabihf" ;;
  *)
    echo "usage: $0 aarch64-unknown-linux-gnu|armv7-unknown-linux-gnueabihf [--test]" >&2
    exit 2 ;;
esac

log() { printf '[cross-build] %s\n' "$*" >&2; }

missing=()
command -v "$gcc" >/dev/null || missing+=("$gcc_pkg")
command -v "${qemu%% *}" >/dev/null || missing+=(qemu-user)
if [ ${#missing[@]} -gt 0 ]; then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  log "installing ${missing[*]} (apt-get)"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
fi
if ! rustup target list --installed | grep -qx "$target"; then
  log "adding rustup target $target"
  rustup target add "$target"
fi

log "building agent for $target (profile kiosk)"
cargo build -p agent --profile kiosk --target "$target" --locked
bin="${CARGO_TARGET_DIR:-target}/$target/kiosk/agent"

# Shared libraries the binary asks for: the C runtime only.
needed=$(readelf -d "$bin" | sed -n 's/.*Shared library: \[\(.*\)\]/\1/p' | tr '\n' ' ')
for lib in $needed; do
  case "$lib" in
    libc.so.*|libm.so.*|libgcc_s.so.*|ld-linux*|libpthread.so.*|libdl.so.*|librt.so.*) ;;
    *) log "ERROR: $bin links $lib; the kiosk agent must need nothing beyond the C runtime"; exit 1 ;;
  esac
done
size=$(stat -c %s "$bin")
awk -v t="$target" -v s="$size" -v l="$needed" \
  'BEGIN { printf "agent for %s: %d bytes (%.2f MiB), links: %s\n", t, s, s / 1048576, l }'
# The emulated binary answers.
$qemu "$bin" --version

if [ "$run_tests" = 1 ]; then
  log "running the agent's tests for $target under qemu"
  KTK_TARGET_RUNNER="$qemu" cargo test -p agent --target "$target" --locked
fi
