"""Whom Nginx on a web node believes about the client's address.

Nginx takes the client's address from X-Forwarded-For, which anyone can send. Only HAProxy's
header may count, so only addresses inside the VPC are trusted to set it; trusting any sender
would let a client forge the address the app logs and rate-limits by.
"""

from __future__ import annotations

import ipaddress
import re

from components.rendered_hosts import userdata_for
from lab.localize import shipped_files
from settings import load_settings

NGINX_CONF = "/etc/nginx/nginx.conf"


def trusted_senders(vpc_cidr: str) -> list[str]:
    settings = load_settings({"vpcCidr": vpc_cidr}, stack="dev")
    web = userdata_for(settings, "eu-west-1", "123456789012")[1]
    configs = {node: shipped_files(userdata)[NGINX_CONF].decode() for node, userdata in web.items()}
    assert configs, "no web node rendered"
    senders = {
        node: re.findall(r"^\s*set_real_ip_from\s+([^;\s]+);", text, re.M)
        for node, text in configs.items()
    }
    for text in configs.values():
        assert re.search(r"^\s*real_ip_header\s+X-Forwarded-For;", text, re.M)
    (trusted,) = {tuple(addresses) for addresses in senders.values()}
    return list(trusted)


def test_only_the_vpc_may_set_the_client_address() -> None:
    for vpc_cidr in ("10.20.0.0/16", "172.31.128.0/24"):
        trusted = trusted_senders(vpc_cidr)
        assert trusted, "X-Forwarded-For is believed from nobody: the app sees HAProxy's address"
        vpc = ipaddress.IPv4Network(vpc_cidr)
        for sender in trusted:
            network = ipaddress.IPv4Network(sender, strict=False)
            assert network.subnet_of(vpc), f"{sender} lies outside the VPC {vpc_cidr}"
