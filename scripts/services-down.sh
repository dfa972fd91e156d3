#!/usr/bin/env bash
# Stop what scripts/services-up.sh started (and nothing else): the machine's
# own MariaDB and Mosquitto are left alone unless services-up started them.
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
state=${KTK_STATE_DIR:-$repo/.ktk}
log() { printf '[services-down] %s\n' "$*" >&2; }
[ -f "$state/started" ] || { log "nothing recorded as started"; exit 0; }

while read -r svc; do
  case "$svc" in
    tansu)
      if [ -f "$state/tansu.pid" ] && kill "$(cat "$state/tansu.pid")" 2>/dev/null; then
        log "Tansu stopped"
      fi
      rm -f "$state/tansu.pid"
      ;;
    mosquitto) pkill -x mosquitto && log "Mosquitto stopped" || true ;;
    mariadb) start-stop-daemon --stop --oknodo --exec /usr/sbin/mariadbd && log "MariaDB stopped" || true ;;
  esac
done <"$state/started"
: >"$state/started"
