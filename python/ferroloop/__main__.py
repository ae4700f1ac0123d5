"""``python -m ferroloop``: run an unchanged asyncio script on ferroloop, or compare loops.

    python -m ferroloop run SCRIPT [ARGS...]    # like ``python SCRIPT ARGS...``
                                                # (uvicorn's loop="auto" included: _uvicorn.py)
    python -m ferroloop bench [--n N] [--rounds R] [--chart FILE.png|.svg]
    python -m ferroloop --version              # also: ferroloop --version
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
    show = sys.stderr.isatty() if args.progress is None else args.progress
    progress = _bench.ProgressLine(sys.stderr) if show else None
    try:
        results = _bench.compare_sleep0(args.n, args.rounds, specs, progress)
    finally:
        if progress:
            progress.clear()
    print(_bench.sleep0_table(results, args.n))
    if args.chart is not None:
        from . import _chart

        try:
            _chart.sleep0_chart(results, args.n, specs, args.chart)
        except OSError as exc:  # the table above is the run's record; say why the chart is not
            print(f"chart: cannot write {args.chart}: {exc}", file=sys.stderr)
            return 1
        print(f"chart: {args.chart}")
    return 0


def _chart_file(path: str) -> str:
    """``--chart FILE``, checked before the benchmark runs: a .png or .svg name in an
    existing directory, and matplotlib importable."""
    if os.path.splitext(path)[1].lower() not in (".png", ".svg"):
        raise argparse.ArgumentTypeError(f"{path!r}: the file name must end in .png or .svg")
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise argparse.ArgumentTypeError(f"{path!r}: no such directory: {directory}")
    try:
        from . import _chart  # noqa: F401  (imports matplotlib)
    except ImportError as exc:
        raise argparse.ArgumentTypeError(
            f"drawing a chart needs matplotlib ({exc}): pip install 'ferroloop[chart]'"
        ) from None
    return path


def _positive_int(text: str) -> int:
    value = int(text.replace("_", "").replace(",", ""))
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be positive: {text}")
    return value


def _prog() -> str:
    """``ferroloop`` when run as the console script, ``python -m ferroloop`` otherwise."""
    name = os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else ""
    return "ferroloop" if name == "ferroloop" else "python -m ferroloop"


def _version_line() -> str:
    import platform

    import ferroloop

    return (f"ferroloop {ferroloop.__version__} "
            f"({platform.python_implementation()} {platform.python_version()})")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog=_prog(),
        description="ferroloop: the asyncio event loop, rebuilt in Rust.",
    )
    parser.add_argument("--version", action="version", version=_version_line(),
                        help="print ferroloop's version and the interpreter's, and exit")
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
    p_bench.add_argument("--chart", metavar="FILE", type=_chart_file,
                         help="also draw the results to FILE (.png or .svg; needs matplotlib: "
                         "pip install 'ferroloop[chart]')")
    p_bench.add_argument("--progress", action=argparse.BooleanOptionalAction,
                         help="show which measurement is running, on stderr (default: when "
                         "stderr is a terminal, as one line rewritten in place)")
    p_bench.set_defaults(func=_cmd_bench)

    args = parser.parse_args(argv)
    status: int = args.func(args)
    return status


if __name__ == "__main__":
    sys.exit(main())
