"""The command line refuses what cannot be meant, in one line and exit
status 2, before anything runs; each flag has one meaning (--pprof is a
file cgo-audit writes, --pprof-url an address it reads)."""

from __future__ import annotations

import pytest

from cgo_audit.cli import build_parser


def refused(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    with pytest.raises(SystemExit) as stop:
        build_parser().parse_args(list(argv))
    assert stop.value.code == 2
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    return lines[0]


@pytest.mark.parametrize("argv, needle", [
    (["bench", "--pprof", "http://127.0.0.1:6060", "./..."], "is an address, not a file"),
    (["run", "--pprof-url", "leak.pb.gz", "--", "server"], "is not an http:// address"),
    (["watch", "--pprof-url", "127.0.0.1:6060", "1"], "is not an http:// address"),
    (["run", "--interval", "0", "--", "server"], "'0' is not a number of seconds > 0"),
    (["run", "--duration", "-1", "--", "server"], "'-1' is not a number of seconds >= 0"),
    (["run", "--concurrency", "0", "--", "server"], "'0' is not a whole number >= 1"),
    (["run", "--restarts", "two", "--", "server"], "'two' is not a whole number >= 0"),
    (["run", "--memory-limit", "lots", "--", "server"], "not a size: 'lots'"),
    (["bench", "-j", "0", "./..."], "'0' is not a whole number >= 1"),
    (["bench", "--timeout", "-3", "./..."], "'-3' is not a number of seconds > 0"),
    (["demo", "--kills", "0"], "'0' is not a whole number >= 1"),
    (["bench", "--no-such-option"], "unrecognized arguments: --no-such-option"),
])
def test_bad_options_are_one_line(capsys, argv, needle):
    line = refused(capsys, *argv)
    assert line.startswith(f"cgo-audit {argv[0]}: error: ") or line.startswith("cgo-audit: error: "), line
    assert needle in line


def test_each_pprof_flag_keeps_its_one_meaning():
    bench = build_parser().parse_args(["bench", "--pprof", "leak.pb.gz", "./..."])
    assert str(bench.pprof) == "leak.pb.gz"
    run = build_parser().parse_args(["run", "--pprof-url", "http://127.0.0.1:6060/", "--", "server"])
    assert run.pprof_url == "http://127.0.0.1:6060"
    watch = build_parser().parse_args(["watch", "--pprof-url", "https://svc:8443", "7"])
    assert watch.pprof_url == "https://svc:8443" and watch.pid == 7
