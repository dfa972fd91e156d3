#!/usr/bin/env bash
# Make sure the services the tests and the pipeline need run on loopback:
#   MariaDB   127.0.0.1:3306   (started if down; the machine normally runs it)
#   Mosquitto 127.0.0.1:1883   (started if down; the machine normally runs it)
#   Tansu     127.0.0.1:9092   Kafka-compatible broker, durable sqlite storage,
#                              installed with `cargo install` into a reused cache
#                              when absent, started with data in $KTK_STATE_DIR.
# Idempotent: what already runs is reused. Services this script starts are
# recorded in $KTK_STATE_DIR/started so scripts/services-down.sh stops only those.
#
# Environment:
#   KTK_STATE_DIR   data, logs, pid files       (default: <repo>/.ktk)
#   KTK_TOOLS_DIR   cargo install root for tansu (default: ~/.cache/kiosk-to-kafka)
#   KTK_KAFKA_PORT  Tansu port                   (default: 9092)
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
state=${KTK_STATE_DIR:-$repo/.ktk}
tools=${KTK_TOOLS_DIR:-$HOME/.cache/kiosk-to-kafka}
kafka_port=${KTK_KAFKA_PORT:-9092}
tansu_version=0.6.0
mkdir -p "$state"
touch "$state/started"

log() { printf '[services-up] %s\n' "$*" >&2; }
die() { printf '[services-up] ERROR: %s\n' "$*" >&2; exit 1; }

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

wait_port() { # port seconds name
  local i
  for ((i = 0; i < $2 * 10; i++)); do
    port_open "$1" && return 0
    sleep 0.1
  done
  return 1
}

mark_started() { grep -qx "$1" "$state/started" || echo "$1" >>"$state/started"; }

# --- MariaDB ---------------------------------------------------------------
if port_open 3306; then
  log "MariaDB: already running on 127.0.0.1:3306"
else
  command -v mariadbd >/dev/null || [ -x /usr/sbin/mariadbd ] ||
    die "MariaDB is not running on 127.0.0.1:3306 and mariadbd is not installed (apt-get install mariadb-server)"
  log "MariaDB: starting"
  start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd
  wait_port 3306 60 || die "MariaDB did not open 127.0.0.1:3306 within 60 s (see /var/log/mysql)"
  mark_started mariadb
fi

# --- Mosquitto -------------------------------------------------------------
if port_open 1883; then
  log "Mosquitto: already running on 127.0.0.1:1883"
else
  command -v mosquitto >/dev/null ||
    die "Mosquitto is not running on 127.0.0.1:1883 and is not installed (apt-get install mosquitto)"
  log "Mosquitto: starting"
  mosquitto -d -c /etc/mosquitto/mosquitto.conf
  wait_port 1883 20 || die "Mosquitto did not open 127.0.0.1:1883 within 20 s"
  mark_started mosquitto
fi

# --- Tansu (Kafka API) -----------------------------------------------------
tansu_bin() {
  if [ -x "$tools/bin/tansu" ]; then echo "$tools/bin/tansu"; return; fi
  command -v tansu 2>/dev/null || true
}

if port_open "$kafka_port"; then
  log "Kafka (Tansu): already running on 127.0.0.1:$kafka_port"
else
  bin=$(tansu_bin)
  if [ -z "$bin" ]; then
    log "Tansu: not installed; building tansu $tansu_version into $tools (10-15 min on 2 cores, once per machine)"
    cargo install tansu --version "$tansu_version" --locked --features libsql,dynostore --root "$tools" \
      >"$state/tansu-install.log" 2>&1 ||
      { tail -n 30 "$state/tansu-install.log" >&2; die "cargo install tansu failed (log: $state/tansu-install.log)"; }
    bin="$tools/bin/tansu"
  fi
  mkdir -p "$state/tansu"
  log "Tansu: starting on 127.0.0.1:$kafka_port, data in $state/tansu"
  # Tansu resolves a sqlite:// path against its working directory.
  (cd "$state/tansu" && RUST_LOG=${TANSU_LOG:-warn} exec nohup "$bin" broker \
    --listener-url "tcp://127.0.0.1:$kafka_port" \
    --advertised-listener-url "tcp://127.0.0.1:$kafka_port" \
    --storage-engine "sqlite://tansu.db" \
    >>"$state/tansu.log" 2>&1) &
  echo $! >"$state/tansu.pid"
  wait_port "$kafka_port" 60 || { tail -n 20 "$state/tansu.log" >&2; die "Tansu did not open 127.0.0.1:$kafka_port within 60 s (log: $state/tansu.log)"; }
  mark_started tansu
fi

# Tansu 0.6's sqlite schema has no index on its header table, and every
# fetched record looks up its headers with a full scan of that table, so
# reading N records costs O(N x headers stored). Add the index (idempotent).
if [ -f "$state/tansu/tansu.db" ]; then
  python3 - "$state/tansu/tansu.db" <<'PY' || log "Tansu: could not add the header index (reads will be slow)"
import sqlite3, sys, time
for _ in range(100):
    try:
        c = sqlite3.connect(sys.argv[1], timeout=5)
        if c.execute("select count(*) from sqlite_master where type='table' and name='header'").fetchone()[0]:
            c.execute("CREATE INDEX IF NOT EXISTS ktk_header_record ON header (topition, offset_id)")
            c.commit()
            sys.exit(0)
    except sqlite3.Error:
        pass
    time.sleep(0.1)
sys.exit(1)
PY
fi

# Topics: created if missing (the bridge can also create them).
bin=$(tansu_bin)
if [ -n "$bin" ]; then
  for spec in hospital_arrivals:4 hospital_arrivals.dlq:1; do
    topic=${spec%%:*}
    parts=${spec##*:}
    if ! "$bin" topic list --broker "tcp://127.0.0.1:$kafka_port" 2>/dev/null | grep -qF "$topic"; then
      "$bin" topic create "$topic" --partitions "$parts" --broker "tcp://127.0.0.1:$kafka_port" >/dev/null 2>&1 ||
        log "Tansu: topic $topic not created (it may already exist)"
    fi
  done
fi

log "ready: MariaDB 127.0.0.1:3306, Mosquitto 127.0.0.1:1883, Kafka 127.0.0.1:$kafka_port"
