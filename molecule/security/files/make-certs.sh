#!/bin/sh
# Fixture PKI: a CA, a server certificate for pg1 and a client certificate signed by it, plus a foreign CA with
# a client certificate of its own (the attack suite presents it). Run once by prepare.yml.
set -eu
PKI=$1; IP=$2
cd "$PKI"
mk_ca() { openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 30 \
  -subj "/CN=$2" -keyout "$1/ca.key" -out "$1/ca.crt" 2>/dev/null; }
mk_leaf() { # dir name ca_dir ext
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -subj "/CN=$2" \
    -keyout "$1/$4.key" -out "$1/$4.csr" 2>/dev/null
  printf '%s\n' "$5" > "$1/$4.ext"
  openssl x509 -req -in "$1/$4.csr" -CA "$3/ca.crt" -CAkey "$3/ca.key" -CAcreateserial -days 30 \
    -extfile "$1/$4.ext" -out "$1/$4.crt" 2>/dev/null
  rm -f "$1/$4.csr" "$1/$4.ext"
}
mkdir -p /root/fixture-ca
mk_ca /root/fixture-ca "Fixture CA"
mk_leaf postgresql pg1 /root/fixture-ca server "subjectAltName=DNS:pg1,DNS:localhost,IP:127.0.0.1,IP:$IP"
mk_leaf client app_rw /root/fixture-ca client "extendedKeyUsage=clientAuth"
cp /root/fixture-ca/ca.crt postgresql/ca.crt
cp /root/fixture-ca/ca.crt client/ca.crt
mk_ca /root/foreign-ca "Foreign CA"
mk_leaf /root/foreign-ca app_rw /root/foreign-ca client "extendedKeyUsage=clientAuth"
mk_leaf /root/foreign-ca pg1 /root/foreign-ca server "subjectAltName=DNS:pg1,DNS:localhost,IP:127.0.0.1,IP:$IP"
chown -R postgres:postgres "$PKI"
chmod 0600 postgresql/server.key client/client.key /root/foreign-ca/*.key
