"""The `replicator` console script (and `python -m replicator`).

Starting a command imports a few hundred modules (the CLI's, then the stage's drivers when the command
runs); every few hundred new objects the cyclic garbage collector walks all of them again, so on
this kind of machine it takes about a tenth of the start-up. It is off while the command line's
own modules load; they are then frozen (never walked again: they live as long as the process) and
the collector is back on before anything else runs."""

from __future__ import annotations

import gc


def main() -> None:
    gc.disable()
    try:
        from replicator.cli import main as run
    finally:
        gc.freeze()
        gc.enable()
    run()


if __name__ == "__main__":
    main()
