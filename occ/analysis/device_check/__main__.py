"""Entry of one section process (started by ``runner``; users run ``tools/device_check.py``).

    python -m occ.analysis.device_check --child NAME --options OPTS.json --part OUT.json --deadline T
"""
import argparse
import sys

from occ.analysis.device_check.runner import run_child


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument('--child', required=True, help='section name')
    p.add_argument('--options', required=True, help='CheckOptions as JSON')
    p.add_argument('--part', required=True, help='where the section writes its result')
    p.add_argument('--deadline', type=float, required=True, help='time.time() by which to return')
    p.add_argument('--world-info', default=None, help="the world section's result (JSON)")
    a = p.parse_args(argv)
    return run_child(a.child, a.options, a.part, a.deadline, a.world_info)


if __name__ == '__main__':
    sys.exit(main())
