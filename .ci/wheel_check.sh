#!/usr/bin/env bash
# The package as a user installs it: a wheel, installed without -e, then every module imports
# from it, the command answers and notebook 01 runs on it. About a minute: the wheel is installed
# with --no-deps into a folder of its own (its dependencies are those of the CI environment,
# torch included, so none is installed twice), and everything runs from outside the repository.
# The editable install of the CI environment stays on sys.meta_path behind that folder, and it
# would quietly serve any module the wheel lacks from the source tree: so every cyclelib module
# loaded, by the import check and by the notebook, must come from the wheel's folder.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
python=${PYTHON:-$repo/.venv/bin/python}  # the CI environment's interpreter
start=$(date +%s)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# Build from a copy of the tree (git's tracked and unignored files): no build/ or egg-info
# in the checkout, and nothing stale from an earlier build/ can slip into the wheel.
mkdir "$work/src"
git ls-files -z --cached --others --exclude-standard | xargs -0 tar -cf - | tar -xf - -C "$work/src"
"$python" -m pip wheel --quiet --no-deps --wheel-dir "$work/dist" "$work/src"
"$python" -m pip install --quiet --no-deps --target "$work/site" "$work"/dist/cyclelib-*.whl
cd "$work"
export PYTHONPATH="$work/site" CYCLELIB_WHEEL_SITE="$work/site"

# Every module of the source tree imports, from the wheel.
"$python" - "$repo" <<'EOF'
import importlib, os, sys
from pathlib import Path

site, repo = os.environ["CYCLELIB_WHEEL_SITE"], Path(sys.argv[1])
names = sorted(".".join(p.with_suffix("").parts[:-1] if p.name == "__init__.py" else
                        p.with_suffix("").parts)
               for p in (path.relative_to(repo) for path in (repo / "cyclelib").rglob("*.py")))
for name in names:
    module = importlib.import_module(name)
    assert module.__file__.startswith(site + os.sep), f"{name} came from {module.__file__}"
print(f"wheel check: {len(names)} modules import from the wheel")
EOF
"$work/site/bin/cyclelib" --help > /dev/null
"$work/site/bin/cyclelib" --version
# The notebooks are package data: both editions are written from the wheel alone.
"$work/site/bin/cyclelib" notebooks "$work/teacher"
"$work/site/bin/cyclelib" notebooks "$work/student" --student
test "$(ls "$work"/teacher/0*.ipynb | wc -l)" -eq 5 && test "$(ls "$work"/student/0*.ipynb | wc -l)" -eq 5

# Notebook 01 on the wheel (synthetic set), with a last cell that checks where cyclelib came from.
"$python" - "$repo/notebooks/01_data_exploration.ipynb" "$work/01.ipynb" <<'EOF'
import json, sys

notebook = json.load(open(sys.argv[1]))
check = ("import os, sys\n"
         "site = os.environ['CYCLELIB_WHEEL_SITE'] + os.sep\n"
         "outside = [m.__file__ for n, m in sys.modules.items() if n.split('.')[0] == 'cyclelib'\n"
         "           and not m.__file__.startswith(site)]\n"
         "assert not outside, f'not from the wheel: {outside}'")
notebook["cells"].append({"cell_type": "code", "execution_count": None, "id": "wheel-check",
                          "metadata": {}, "outputs": [], "source": check})
json.dump(notebook, open(sys.argv[2], "w"))
EOF
CYCLELIB_HEADLESS=1 MPLBACKEND=Agg "$python" -m papermill --no-progress-bar --log-level WARNING \
    --cwd "$work" "$work/01.ipynb" "$work/01.out.ipynb"
echo "wheel check: notebook 01 ran on the wheel"
echo "wheel check took $(( $(date +%s) - start )) s"
