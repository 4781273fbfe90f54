"""`python -m lab.benchmark` (`make bench`): the benchmark; it lives in lab/bench/."""

import sys

from lab.bench.runner import main

if __name__ == "__main__":
    sys.exit(main())
