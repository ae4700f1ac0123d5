"""``python -m ferroloop``: run an unchanged asyncio script on ferroloop, or compare loops.

    python -m ferroloop run SCRIPT [ARGS...]    # like ``python SCRIPT ARGS...``
                                                # (uvicorn's loop="auto" included: _uvicorn.py)
    python -m ferroloop bench [--n N] [--rounds R]
"""

from __future__ import annotations

import argparse
import os
import runpy
import sys
from collections.abc import Sequence
from types import TracebackType


def _cmd_run(args: argparse.Namespace) -> int:
    import ferroloop

    from . import _uvicorn

    script = args.script
    if not os.path.exists(script):
        print(f"{sys.executable}: can't open file {script!r}: No such file or directory",
              file=sys.stderr)
        return 2
    ferroloop.install()
    _uvicorn.redirect_auto_loop()
    sys.argv = [script, *args.args]
    # What ``python SCRIPT`` puts first on sys.path: the script's directory (symlinks
    # resolved), or the directory / zip file itself when it is run as a package.
    if os.path.isfile(script) and not _is_zip(script):
        sys.path[0] = os.path.dirname(os.path.realpath(script))
    else:
        sys.path[0] = script
    # SystemExit (sys.exit, argparse errors...) and KeyboardInterrupt pass through
    # unchanged. Any other exception is reported as ``python SCRIPT`` would report it
    # (through sys.excepthook, without this wrapper's and runpy's frames), status 1.
    try:
        runpy.run_path(script, run_name="__main__")
    except (SystemExit, KeyboardInterrupt):
        raise
    except BaseException as exc:
        tb = _strip_wrapper_frames(exc.__traceback__)
        sys.excepthook(type(exc), exc.with_traceback(tb), tb)
        return 1
    return 0


def _strip_wrapper_frames(tb: TracebackType | None) -> TracebackType | None:
    """Drop the leading traceback entries that belong to this module or to runpy."""
    while tb is not None:
        filename = tb.tb_frame.f_code.co_filename
        if filename == __file__ or filename.startswith("<frozen runpy") \
                or os.path.basename(filename) == "runpy.py":
            tb = tb.tb_next
        else:
            break
    return tb


def _is_zip(path: str) -> bool:
    import zipfile

    return zipfile.is_zipfile(path)


def _cmd_bench(args: argparse.Namespace) -> int:
    from . import _bench

    specs, skipped = _bench.available_loops()
    print(_bench.versions_line(specs))
    for name, reason in skipped:
        print(f"skipping {name}: {reason}")
    results = _bench.compare_sleep0(args.n, args.rounds, specs)
    print(_bench.sleep0_table(results, args.n))
    return 0


def _positive_int(text: str) -> int:
    value = int(text.replace("_", "").replace(",", ""))
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be positive: {text}")
    return value


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m ferroloop",
        description="ferroloop: the asyncio event loop, rebuilt in Rust.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    p_run = sub.add_parser(
        "run",
        help="run an asyncio script on ferroloop",
        description="Run SCRIPT as __main__ with ferroloop installed as asyncio's event "
        "loop (ferroloop.install()); sys.argv becomes [SCRIPT, *ARGS]. uvicorn's default "
        "loop=\"auto\" (uvloop when installed) also becomes ferroloop; an explicit "
        "loop=\"asyncio\" or \"uvloop\" is kept.",
    )
    p_run.add_argument("script", metavar="SCRIPT", help="the Python script to run")
    p_run.add_argument("args", metavar="ARGS", nargs=argparse.REMAINDER,
                       help="arguments passed to the script")
    p_run.set_defaults(func=_cmd_run)

    p_bench = sub.add_parser(
        "bench",
        help="compare await asyncio.sleep(0) on asyncio, uvloop, rloop, ferroloop",
        description="Time `await asyncio.sleep(0)` N times in one task on each installed "
        "loop (asyncio, uvloop, rloop, ferroloop) and on no loop at all (the floor: "
        "the coroutine driven by bare coro.send(None)).",
    )
    p_bench.add_argument("--n", type=_positive_int, default=1_000_000,
                         help="sleep(0) steps per measurement (default 1,000,000)")
    p_bench.add_argument("--rounds", type=_positive_int, default=3,
                         help="rounds, loop order rotated each round (default 3)")
    p_bench.set_defaults(func=_cmd_bench)

    args = parser.parse_args(argv)
    status: int = args.func(args)
    return status


if __name__ == "__main__":
    sys.exit(main())
