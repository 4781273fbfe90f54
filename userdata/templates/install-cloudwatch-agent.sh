#!/bin/sh
# Install the Amazon CloudWatch agent and start it with this host's configuration.
# Rendered from userdata/templates/install-cloudwatch-agent.sh; run once by cloud-init.
#
# The agent is not in Ubuntu's archive: AWS publishes a .deb per architecture in a bucket per
# region, signed with AWS's key (fingerprint below, from AWS's documentation). Monitoring must
# never hold the host back: every download is bounded (4 tries, 60 s of retrying, 120 s per
# transfer), and any failure ends this script with status 0 and one line in cloud-init's output.
# The host then serves without its agent, and its alarms show "insufficient data".
set -u

region=@@{region}
config=@@{agent_config}
fingerprint=@@{key_fingerprint}
base="https://amazoncloudwatch-agent-$region.s3.$region.amazonaws.com"
arch=$(dpkg --print-architecture)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

give_up() {
    echo "install-cloudwatch-agent: $*; this host runs without the CloudWatch agent" >&2
    exit 0
}

fetch() {
    curl -fsS --retry 3 --retry-all-errors --retry-max-time 60 --connect-timeout 5 \
        --max-time 120 -o "$work/$2" "$base/$1" || give_up "cannot download $base/$1"
}

fetch "ubuntu/$arch/latest/amazon-cloudwatch-agent.deb" agent.deb
fetch "ubuntu/$arch/latest/amazon-cloudwatch-agent.deb.sig" agent.deb.sig
fetch "assets/amazon-cloudwatch-agent.gpg" key.gpg

export GNUPGHOME="$work/gnupg"
mkdir -m 700 "$GNUPGHOME"
gpg --batch --quiet --import "$work/key.gpg" 2>/dev/null || give_up "AWS's key does not import"
# VALIDSIG's last field is the signing key's primary fingerprint: only AWS's key passes.
gpg --batch --status-fd 1 --verify "$work/agent.deb.sig" "$work/agent.deb" 2>/dev/null \
    | grep -Eq "^\[GNUPG:\] VALIDSIG .* $fingerprint\$" \
    || give_up "the package's signature is not AWS's"

dpkg -i -E "$work/agent.deb" || give_up "dpkg cannot install the package"
/opt/aws/amazon-cloudwatch-agent/bin/amazon-cloudwatch-agent-ctl \
    -a fetch-config -m ec2 -s -c "file:$config" || give_up "the agent refused $config"
