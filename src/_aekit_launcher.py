"""The ``aekit`` command's entry point, outside the package so that Ctrl-C while PyTorch and the rest are
still being imported ends the command with one line, as it does later, not a traceback.

(Importing ``aekit.cli`` imports the ``aekit`` package first, and with it torch: seconds on a cold start.)
"""

import sys


def main() -> int:
    try:
        from aekit.cli import main as cli_main
    except KeyboardInterrupt:
        print("aekit: interrupted while starting; nothing was done", file=sys.stderr)
        return 130
    return cli_main()
