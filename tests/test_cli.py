"""The ``cyclelib`` command line: the check-data contract that scripts rely on, the version,
and huge pages turned on before PyTorch reads the setting."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from cyclelib.cli import main
from cyclelib.data import make_synthetic_icbhi

SPLIT_KEYS = {"recordings", "cycles", "normal", "crackle", "wheeze", "both"}


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory: pytest.TempPathFactory):
    return make_synthetic_icbhi(tmp_path_factory.mktemp("synth") / "icbhi", seed=1, patients=6)


def test_check_data_json_on_the_synthetic_set_is_clean(synthetic, capsys) -> None:
    assert main(["check-data", str(synthetic), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["problems"] == []
    assert report["recordings"] == report["recordings_with_audio"] > 0
    assert set(report["split"]) == {"train", "test"}
    for split in report["split"].values():
        assert set(split) == SPLIT_KEYS
        assert split["cycles"] == sum(split[k] for k in ("normal", "crackle", "wheeze", "both"))
    assert report["cycles"] == sum(s["cycles"] for s in report["split"].values())


def test_check_data_reports_every_problem_with_file_and_line(synthetic, tmp_path, capsys) -> None:
    broken = tmp_path / "icbhi"
    shutil.copytree(synthetic, broken)
    first, second = sorted(broken.glob("3*.txt"))[:2]
    first.write_text(first.read_text() + "1.0\t2.0\t0\n")  # 3 columns
    second.write_text("0.5\t0.2\t0\t0\n")  # start >= end
    assert main(["check-data", str(broken), "--json"]) == 1
    problems = json.loads(capsys.readouterr().out)["problems"]
    where = {(p["file"].split("/")[-1], p["line"]) for p in problems}
    last_line = len(first.read_text().splitlines())
    assert (first.name, last_line) in where and (second.name, 1) in where


def test_check_data_usage_errors_exit_2(tmp_path) -> None:
    run = [sys.executable, "-m", "cyclelib.cli", "check-data"]
    assert subprocess.run([*run, str(tmp_path / "absent")], capture_output=True).returncode == 2
    assert subprocess.run([*run, "--no-such-flag"], capture_output=True).returncode == 2


def test_check_data_human_readable_summary(synthetic, capsys) -> None:
    assert main(["check-data", str(synthetic)]) == 0
    out = capsys.readouterr().out
    assert "0 problem(s)" in out and "train" in out and "test" in out


def test_version(capsys) -> None:
    import cyclelib

    with pytest.raises(SystemExit) as done:
        main(["--version"])
    assert done.value.code == 0 and capsys.readouterr().out == f"cyclelib {cyclelib.__version__}\n"


HUGE_PAGES_PROBE = """
import os, sys
from pathlib import Path
if sys.argv[1] == "cli":
    from cyclelib.cli import main
    main(["synth", sys.argv[2]])  # imports torchaudio: the process's first CPU tensors
else:
    import cyclelib.data  # the same first tensors, without the command line
import torch
tensor = torch.ones(4 << 20)  # 16 MB: above PyTorch's 2 MB huge-page threshold
address, flags = tensor.data_ptr(), None
for line in Path("/proc/self/smaps").read_text().splitlines():
    head = line.split()[0]
    if "-" in head and not head.endswith(":"):
        low, high = (int(x, 16) for x in head.split("-"))
        inside = low <= address < high
    elif inside and line.startswith("VmFlags:"):
        flags = line.split()[1:]
print("hg" in flags)
"""


@pytest.mark.skipif(not Path("/sys/kernel/mm/transparent_hugepage/enabled").is_file(),
                    reason="transparent huge pages are a Linux kernel feature")
@pytest.mark.parametrize(("entry", "user_setting", "advised"),
                         [("cli", None, "True"), ("cli", "0", "False"), ("library", None, "False")])
def test_the_command_line_turns_huge_pages_on_in_time(entry, user_setting, advised,
                                                      tmp_path) -> None:
    """The command sets THP_MEM_ALLOC_ENABLE before PyTorch's first CPU tensor reads it (its
    tensors of 2 MB and more are then advised MADV_HUGEPAGE: "hg" in /proc/self/smaps), unless
    the user set it to 0; the library alone leaves it unset."""
    env = {k: v for k, v in os.environ.items() if k != "THP_MEM_ALLOC_ENABLE"}
    if user_setting is not None:
        env["THP_MEM_ALLOC_ENABLE"] = user_setting
    run = subprocess.run([sys.executable, "-c", HUGE_PAGES_PROBE, entry, str(tmp_path / "s")],
                         capture_output=True, text=True, env=env, check=True)
    assert run.stdout.splitlines()[-1] == advised
