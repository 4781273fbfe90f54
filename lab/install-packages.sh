#!/usr/bin/env bash
# Debian packages the tests and the local lab need, installed only when one is missing.
# The app's runtime is Debian's, as on the web nodes (Ubuntu's): gunicorn, PyMySQL, boto3.
# The lab's stand-ins for AWS: dnsmasq (the private zone), nftables (the Elastic IP).
# Monitoring: prometheus-nginx-exporter (the web nodes' Nginx metrics, as on Ubuntu).
# HTTPS: certbot (the load balancer's ACME client, as on Ubuntu) and pebble, Let's Encrypt's
# test CA (with pebble-challtestsrv), which the lab runs as its ACME server.
# The boot lab (lab/boot): systemd-nspawn, mmdebstrap for its images, apt-cacher-ng as the
# stand-in for the apt mirror, iproute2 for its bridge. openssl: the labs' test certificates.
# curl: the README's lab walk-through (a minimal Debian image has none). keepalived: the
# load-balancer pair's config is checked by the real one (tests/test_elastic_address.py).
# mariadb-backup: the database hosts' backups and restores (tests/test_database_node.py).
# tests/test_install_packages.py checks this list against every command the tests and labs run.
set -euo pipefail
PACKAGES=(haproxy nginx-light mariadb-server mariadb-client cloud-init wrk gunicorn openssl
          python3-pymysql python3-boto3 graphviz dnsmasq-base nftables certbot pebble
          systemd-container iproute2 mmdebstrap apt-cacher-ng prometheus-nginx-exporter curl
          keepalived mariadb-backup)
missing=()
for package in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" \
    || missing+=("$package")
done
[ ${#missing[@]} -eq 0 ] && exit 0
echo "installing: ${missing[*]}" >&2
run() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }
export DEBIAN_FRONTEND=noninteractive
run apt-get update -qq
# Debian starts nothing on install in containers; the lab starts its own daemons anyway.
run apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
