"""The boot lab: every host's unmodified cloud-config booted under systemd and cloud-init.

Each host of the AWS stack becomes a systemd-nspawn container on a bridge of its own, booted
from a Debian image (built once and cached) with the exact userdata `pulumi up` sends as its
NoCloud seed. What stands in for AWS (DNS for the private zone, the RDS CA bundle URL, S3 and
SSM, EC2, Secrets Manager and RDS's API, the database pair, the apt mirror) lives outside the
userdata, on the host side of the bridge. Modules, one concern each: `network` (bridge and
address plan), `images` (base image build and cache), `seed` (what each container gets instead
of EC2's metadata), `containers` (running one container), `standins`, `truststore`, `database`
and `pki` (the stand-ins for AWS and the test CA they share), `elastic_ip` (the public address
that follows the Elastic IP in the EC2 stand-in), `acme` (with `up --https`: the site's domain
and its ACME CA, pebble), `faults` (a host cut off from a stand-in, the
pair's VRRP cut), `state` (what a run records in `state.json`), `bootlab` (bringing a run up; its
`BootLab` combines the rest, and replaces a host), `host_operations` (waiting for a boot,
reboot, kill and start, cutting a host off a stand-in), `teardown` (`down`: exactly what the
run made), `readings` (status and what the stand-ins recorded), `inspect` (what a booted host
says about itself), `__main__` (the command line). The HTTP checks through the load balancer
are `lab.checks`, shared with the process lab.
"""
