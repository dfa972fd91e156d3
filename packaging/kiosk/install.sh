#!/usr/bin/env bash
# Install the kiosk agent on a board (run as root on the board):
#
#   sudo ./install.sh ./agent [agent.toml]
#
# It creates the system user ktk-agent, installs the binary as
# /usr/local/bin/ktk-agent, the config as /etc/ktk-agent/agent.toml (an
# existing config is kept; the new one is written beside it as .new), and the
# systemd unit, then enables and (re)starts the service. An upgrade is the
# same command with the new binary: the outbox in /var/lib/ktk-agent is kept
# and migrated by the new agent on start.
#
# ROOT=/some/dir installs into that directory instead of / and skips
# useradd and systemctl (for checking the layout on a workstation).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
bin=${1:?usage: install.sh AGENT_BINARY [CONFIG]}
config=${2:-$here/agent.toml}
root=${ROOT:-}

install -d -m 0755 "$root/usr/local/bin" "$root/etc/systemd/system"
install -d -m 0750 "$root/etc/ktk-agent"
install -m 0755 "$bin" "$root/usr/local/bin/ktk-agent"
install -m 0644 "$here/ktk-agent.service" "$root/etc/systemd/system/ktk-agent.service"
if [ -e "$root/etc/ktk-agent/agent.toml" ]; then
  install -m 0640 "$config" "$root/etc/ktk-agent/agent.toml.new"
  echo "kept /etc/ktk-agent/agent.toml; the new one is agent.toml.new"
else
  install -m 0640 "$config" "$root/etc/ktk-agent/agent.toml"
fi

if [ -n "$root" ]; then
  echo "installed into $root (no user, no systemctl)"
  exit 0
fi
if ! id ktk-agent >/dev/null 2>&1; then
  useradd --system --no-create-home --home-dir /var/lib/ktk-agent --shell /usr/sbin/nologin ktk-agent
fi
chgrp ktk-agent /etc/ktk-agent /etc/ktk-agent/agent.toml
systemctl daemon-reload
systemctl enable ktk-agent.service
systemctl restart ktk-agent.service
systemctl --no-pager status ktk-agent.service || true
