#!/usr/bin/env python3
"""sluicectl report over 1,000,000 flow records against jq grouping the same
file (`jq -s 'group_by(.host) | ...'`, Debian's jq 1.6), in one run: records
per second and peak RSS of each over interleaved rounds. The log is
bench_suggest's (flow_start, flow_end, deny and dns records of 2,000 names over
20 sandboxes); the report builds every table of `--format json`, jq only the
one count. No namespace and no root needed. See tests/bench/README.md.

usage: bench_report.py [--quick] [--sluicectl PATH] [--records N] [--rounds N]
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_suggest import against_jq, parse_args   # noqa: E402

GOAL = 10                   # report's records/s over jq's


def main():
    return against_jq("report", ["report", "--format", "json", "-"], GOAL, parse_args(__doc__),
                      tenth=True)


if __name__ == "__main__":
    sys.exit(main())
