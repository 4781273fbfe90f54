"""A database host's MariaDB: install, bootstrap, backup, restore, check (dbMode: ec2).

Placeholder until the host's implementation lands: the program ships this file to the
database hosts, and every subcommand fails here.
"""

import sys


def main() -> int:
    print("database-node: not implemented yet", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
