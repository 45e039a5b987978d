#!/usr/bin/env bash
# Create what deploy/compose.yaml needs and must never be committed:
#   .env                              random passwords (mode 600)
#   secrets/evpark-jwt-keys/k1.pem    the accounts service's token signing key (Ed25519)
#   secrets/mosquitto/passwd          Mosquitto users: one per cloud service that reads MQTT
#                                     (the users of ../mqtt/acl.conf) and the site of site.toml
#   secrets/mosquitto/acl.conf        ../mqtt/acl.conf with that site's block (as `evpark sites add` writes it)
#   secrets/mosquitto/certs/          the CA certificate and a server certificate for "mosquitto"
#   secrets/ca/ca.key                 the CA's private key (not mounted anywhere; keep it offline)
#
# usage: ./make-secrets.sh [OUT_DIR]     (default: this folder; refuses to overwrite)
# needs: openssl, and mosquitto_passwd (or docker, to borrow it from eclipse-mosquitto:2)
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
out="${1:-$here}"
site_id="$(sed -n 's/^site_id *= *"\(.*\)"/\1/p' "$here/site.toml")"
secrets="$out/secrets/mosquitto"

if [[ -e "$out/.env" || -e "$secrets" || -e "$out/secrets/evpark-jwt-keys" ]]; then
  echo "make-secrets: $out/.env or $secrets exists already; remove them to start over" >&2
  exit 1
fi
command -v openssl >/dev/null || { echo "make-secrets: openssl is needed" >&2; exit 1; }

random() { openssl rand -hex 24; }
umask 077
mkdir -p "$secrets/certs" "$out/secrets/ca"

# The cloud's broker users: one per service that reads MQTT, as ../mqtt/acl.conf lists them
# (evpark-<service>; the broker ties client ids to usernames, so they cannot share one).
cloud_users="$(sed -n 's/^user //p' "$here/../mqtt/acl.conf")"
site_mqtt="$(random)"
{
  echo "POSTGRES_PASSWORD=$(random)"
  echo "RABBITMQ_PASSWORD=$(random)"
  echo "REDIS_PASSWORD=$(random)"
  for user in $cloud_users; do
    service="${user#evpark-}"
    echo "$(echo "$service" | tr '[:lower:]-' '[:upper:]_')_MQTT_PASSWORD=$(random)"
  done
  echo "SITE_MQTT_PASSWORD=$site_mqtt"
} > "$out/.env"

logins="$site_id $site_mqtt"
for user in $cloud_users; do
  variable="$(echo "${user#evpark-}" | tr '[:lower:]-' '[:upper:]_')_MQTT_PASSWORD"
  logins="$logins $user $(sed -n "s/^$variable=//p" "$out/.env")"
done
touch "$secrets/passwd"
if command -v mosquitto_passwd >/dev/null; then
  set -- $logins
  while [ $# -gt 0 ]; do mosquitto_passwd -b "$secrets/passwd" "$1" "$2"; shift 2; done
else
  docker run --rm -v "$secrets:/work" eclipse-mosquitto:2 sh -c \
    'set -- $0 "$@"; while [ $# -gt 0 ]; do mosquitto_passwd -b /work/passwd "$1" "$2"; shift 2; done' $logins
fi

# The ACL: the cloud part, then the site's block (the format of evpark/broker_access.py).
{
  cat "$here/../mqtt/acl.conf"
  printf '# site %s (evpark sites add)\nuser %s\n' "$site_id" "$site_id"
  printf 'topic write evpark/sites/%s/up/#\ntopic write evpark/sites/%s/status\n' "$site_id" "$site_id"
  printf 'topic read evpark/sites/%s/down/command\n# end of site %s\n' "$site_id" "$site_id"
} > "$secrets/acl.conf"

certs="$secrets/certs"
ca_key="$out/secrets/ca/ca.key"
openssl req -x509 -newkey rsa:3072 -nodes -days 825 -subj "/CN=evpark MQTT CA" \
  -keyout "$ca_key" -out "$certs/ca.crt" 2>/dev/null
openssl req -newkey rsa:3072 -nodes -subj "/CN=mosquitto" \
  -keyout "$certs/server.key" -out "$certs/server.csr" 2>/dev/null
printf 'subjectAltName=DNS:mosquitto,DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n' > "$certs/server.ext"
openssl x509 -req -in "$certs/server.csr" -CA "$certs/ca.crt" -CAkey "$ca_key" -CAcreateserial \
  -days 825 -extfile "$certs/server.ext" -out "$certs/server.crt" 2>/dev/null
rm -f "$certs/server.csr" "$certs/server.ext" "$certs/ca.srl" "$out/secrets/ca/ca.srl"
chmod 644 "$certs/ca.crt" "$certs/server.crt"

# The accounts service signs access tokens with it; the container's user must read it.
keys="$out/secrets/evpark-jwt-keys"
mkdir -p "$keys"
openssl genpkey -algorithm ed25519 -out "$keys/k1.pem"
chmod 755 "$keys" && chmod 644 "$keys/k1.pem"   # secrets/ itself stays 700 on the host

echo "wrote $out/.env and $out/secrets (site $site_id); move $ca_key offline"
