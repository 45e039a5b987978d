#!/usr/bin/env bash
# Create what deploy/compose.yaml needs and must never be committed:
#   .env                              random passwords (mode 600)
#   secrets/evpark-jwt-keys/k1.pem    the accounts service's token signing key (Ed25519)
#   secrets/mosquitto/passwd          Mosquitto users: evpark-cloud and the site of site.toml
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

cloud_mqtt="$(random)"
site_mqtt="$(random)"
cat > "$out/.env" <<ENV
POSTGRES_PASSWORD=$(random)
RABBITMQ_PASSWORD=$(random)
REDIS_PASSWORD=$(random)
CLOUD_MQTT_PASSWORD=$cloud_mqtt
SITE_MQTT_PASSWORD=$site_mqtt
ENV

touch "$secrets/passwd"
if command -v mosquitto_passwd >/dev/null; then
  mosquitto_passwd -b "$secrets/passwd" evpark-cloud "$cloud_mqtt"
  mosquitto_passwd -b "$secrets/passwd" "$site_id" "$site_mqtt"
else
  docker run --rm -v "$secrets:/work" eclipse-mosquitto:2 sh -c \
    "mosquitto_passwd -b /work/passwd evpark-cloud '$cloud_mqtt' && mosquitto_passwd -b /work/passwd '$site_id' '$site_mqtt'"
fi

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
