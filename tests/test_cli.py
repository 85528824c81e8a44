"""The ``cyclelib`` command line: the check-data contract that scripts rely on."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest

from cyclelib.cli import main
from cyclelib.synthetic import make_synthetic_icbhi

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
