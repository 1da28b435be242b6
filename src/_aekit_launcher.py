"""The ``aekit`` command's entry point, outside the package so that Ctrl-C while PyTorch and the rest are
still being imported ends the command with one line, as it does later, not a traceback.

(``aekit.cli`` builds the parser without torch; a command imports torch when it runs: seconds on a cold start.)
"""

import signal
import sys


def main() -> int:
    interrupted: list[int] = []
    previous = signal.getsignal(signal.SIGINT)
    noting = previous is signal.default_int_handler  # not when SIGINT is ignored (a shell's background job)
    if noting:
        # A KeyboardInterrupt raised while a C++ extension runs Python code (pybind11, in torch's import) aborts the
        # process ("terminate called ..."), so while importing an interrupt is only noted, and acted on after.
        signal.signal(signal.SIGINT, lambda signum, frame: interrupted.append(signum))
    try:
        from aekit.cli import main as cli_main
    except KeyboardInterrupt:
        interrupted.append(signal.SIGINT)
    finally:
        if noting:
            signal.signal(signal.SIGINT, signal.SIG_IGN if interrupted else previous)  # once interrupted, on to the exit
    if interrupted:
        print("aekit: interrupted while starting; nothing was done", file=sys.stderr)
        return 130
    return cli_main()
