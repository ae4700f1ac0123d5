"""``python -m ferroloop bench``: the table, ``--chart FILE`` (PNG, SVG, errors) and the
progress line. Tiny ``--n`` and ``--rounds``: these check the plumbing, not the numbers."""

import io
import os
import subprocess
import sys
import xml.etree.ElementTree as ET

import pytest

from ferroloop import _bench
from ferroloop.__main__ import main

TINY = ["--n", "200", "--rounds", "2"]


def _bench_cli(*args, code=None):
    """Run the bench command in a subprocess (it runs rloop, whose loops leak their
    self-pipe sockets at close: kept out of this process); ``code``: a ``-c`` program
    standing in for ``-m ferroloop``."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONASYNCIODEBUG"}
    start = ["-m", "ferroloop"] if code is None else ["-c", code]
    return subprocess.run(
        [sys.executable, *start, "bench", *TINY, *args],
        capture_output=True, text=True, timeout=60, env=env,
    )


# Two runs of the command in one interpreter: matplotlib's import is most of a chart run's
# time (about 1 s here), paid once. Each run's output ends with a marker line.
_TWO_RUNS = """
import sys
from ferroloop.__main__ import main

argv = sys.argv[1:]
cut = argv.index("--then")
for args in (argv[:cut], argv[cut + 1:]):
    status = main(args)
    print(f"=== exit {status}", flush=True)
    print("===", file=sys.stderr, flush=True)
"""


@pytest.fixture(scope="module")
def chart_runs(tmp_path_factory):
    """``bench --chart bench.png``, then ``bench --chart bench.SVG --progress`` (the suffix
    is matched without case): ``{suffix: (path, stdout, stderr)}``."""
    pytest.importorskip("matplotlib")
    tmp = tmp_path_factory.mktemp("chart")
    png, svg = tmp / "bench.png", tmp / "bench.SVG"
    proc = _bench_cli("--chart", str(png), "--then", "bench", *TINY, "--chart", str(svg),
                      "--progress", code=_TWO_RUNS)
    assert proc.returncode == 0, proc.stderr
    outs = proc.stdout.split("=== exit ")
    errs = proc.stderr.split("===\n")
    assert [o[:2] for o in outs[1:]] == ["0\n", "0\n"], proc.stderr
    return {".png": (png, outs[0], errs[0]), ".svg": (svg, outs[1][2:], errs[1])}


def _check_table(out):
    lines = out.splitlines()
    assert lines[0].startswith("python: ")
    assert "await asyncio.sleep(0) x 200 in one task, 2 round(s)" in out
    assert any(line.startswith("ferroloop ") for line in lines)
    return lines


def test_chart_png(chart_runs):
    """The table as before, then the chart's path; no progress lines when stderr is not a
    terminal and --progress was not given."""
    path, out, err = chart_runs[".png"]
    lines = _check_table(out)
    assert lines[-1] == f"chart: {path}"
    assert err == ""
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_chart_svg(chart_runs):
    path, out, _ = chart_runs[".svg"]
    assert _check_table(out)[-1] == f"chart: {path}"
    root = ET.parse(path).getroot()
    assert root.tag == "{http://www.w3.org/2000/svg}svg"
    # the text stays text: every loop measured is named in the picture
    texts = "".join(root.itertext())
    for spec in _bench.available_loops()[0]:
        assert spec.name in texts


def test_progress_when_asked_for(chart_runs):
    """--progress into a pipe: one plain line per measurement, as it starts."""
    _, _, err = chart_runs[".svg"]
    lines = err.splitlines()
    total = 2 * (len(_bench.available_loops()[0]) + 1)  # the loops and the floor, 2 rounds
    assert len(lines) == total and "\r" not in err
    assert lines[0].startswith(f"round 1/2: floor (1/{total}), ")
    assert lines[-1].startswith("round 2/2: ") and f"({total}/{total})" in lines[-1]


@pytest.mark.parametrize("name", ["bench.pdf", "bench", "bench.png.txt"])
def test_chart_bad_suffix(tmp_path, capsys, name):
    with pytest.raises(SystemExit) as exc:
        main(["bench", *TINY, "--chart", str(tmp_path / name)])
    assert exc.value.code == 2
    out, err = capsys.readouterr()
    assert out == ""  # refused before the benchmark ran
    assert "argument --chart:" in err and "must end in .png or .svg" in err


def test_chart_missing_directory(tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["bench", *TINY, "--chart", str(tmp_path / "nowhere" / "bench.png")])
    assert exc.value.code == 2
    assert "no such directory" in capsys.readouterr().err


def test_chart_without_matplotlib(tmp_path):
    """matplotlib missing (None in sys.modules makes its import fail): a usage error that
    names the extra to install, before the benchmark runs; no traceback."""
    code = (
        "import sys; sys.modules['matplotlib'] = None\n"
        "from ferroloop.__main__ import main\n"
        "sys.exit(main(sys.argv[1:]))\n"
    )
    path = tmp_path / "bench.png"
    proc = _bench_cli("--chart", str(path), code=code)
    assert proc.returncode == 2, proc.stderr
    assert proc.stdout == ""
    assert "Traceback" not in proc.stderr
    assert "matplotlib" in proc.stderr
    assert "pip install 'ferroloop[chart]'" in proc.stderr
    assert not path.exists()


class _Terminal(io.StringIO):
    def isatty(self):
        return True

    def fileno(self):
        raise io.UnsupportedOperation("no descriptor")  # columns unknown: 80


def test_progress_line_rewrites_in_place():
    term = _Terminal()
    line = _bench.ProgressLine(term)
    line("round 1/3: asyncio (2/15)")
    line("round 1/3: uvloop (3/15)")
    line("x" * 200)
    line.clear()
    text = term.getvalue()
    assert "\n" not in text
    frames = text.split("\r")[1:]
    assert frames[0].startswith("round 1/3: asyncio (2/15), ")
    # a shorter line blanks what is left of the longer one before it
    assert len(frames[1]) == len(frames[0])
    assert len(frames[2]) == 79  # cut to the terminal's width, so it never wraps
    assert frames[-2].strip() == "" and frames[-1] == ""  # cleared
