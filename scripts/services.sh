#!/usr/bin/env bash
# Make sure the real services the integration tests use are running on their standard ports:
# PostgreSQL 5432, Redis 6379, RabbitMQ 5672, Mosquitto 1883. Starts a stopped one; installs a
# missing one with apt. Idempotent and quick when everything already runs. Also installs the
# command-line tools the tests call: pdftotext (poppler-utils) for the invoice PDFs.
set -uo pipefail
SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
APT_UPDATED=0

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

wait_port() {  # name port seconds
  for _ in $(seq 1 "$(( $3 * 4 ))"); do port_open "$2" && return 0; sleep 0.25; done
  echo "services: $1 did not come up on port $2; look at its log and start it by hand" >&2; return 1
}

apt_install() {
  if [ "$APT_UPDATED" = 0 ]; then $SUDO apt-get update -qq; APT_UPDATED=1; fi
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "$@" >/dev/null
}

ensure() {  # name port binary package start-command...
  local name=$1 port=$2 binary=$3 package=$4; shift 4
  if port_open "$port"; then return 0; fi
  if ! command -v "$binary" >/dev/null 2>&1 && [ ! -x "$binary" ]; then
    echo "services: installing $package"; apt_install "$package"
    port_open "$port" && return 0   # the package's own init may have started it
  fi
  echo "services: starting $name"
  $SUDO bash -c "$*" >/dev/null 2>&1 || true
  wait_port "$name" "$port" 60
}

ensure_tool() {  # binary package
  command -v "$1" >/dev/null 2>&1 && return 0
  if [ -n "$SUDO" ] && ! command -v sudo >/dev/null 2>&1; then
    echo "services: $1 is missing and this user cannot install it (not root, no sudo);" \
         "install $2 (apt-get install -y $2 as root)" >&2
    return 1
  fi
  echo "services: installing $2"; apt_install "$2"
  command -v "$1" >/dev/null 2>&1 && return 0
  echo "services: installing $2 did not provide $1; install it by hand" >&2; return 1
}

ensure PostgreSQL 5432 pg_ctlcluster postgresql \
  'pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql | sort -V | tail -1) main start' || exit 1
ensure Redis 6379 redis-server redis-server \
  'redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no' || exit 1
ensure RabbitMQ 5672 rabbitmq-server rabbitmq-server 'rabbitmq-server -detached' || exit 1
ensure Mosquitto 1883 /usr/sbin/mosquitto mosquitto 'mosquitto -d -c /etc/mosquitto/mosquitto.conf' || exit 1

# PostgreSQL must trust local TCP connections from user postgres (tests create databases).
if ! psql -h 127.0.0.1 -U postgres -c 'select 1' >/dev/null 2>&1; then
  echo "services: PostgreSQL on 127.0.0.1:5432 refuses user postgres without a password;" \
       "allow it in pg_hba.conf (host all postgres 127.0.0.1/32 trust) for the tests" >&2
  exit 1
fi

# The end-to-end billing test reads the invoice PDF with pdftotext.
ensure_tool pdftotext poppler-utils || exit 1
echo "services: PostgreSQL, Redis, RabbitMQ and Mosquitto are up; pdftotext is installed"
