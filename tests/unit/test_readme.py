"""The README's fresh-machine commands and what CI runs cannot drift apart."""

from __future__ import annotations

import re
import shlex

from support.paths import REPO


def first_code_block() -> list[str]:
    text = (REPO / "README.md").read_text(encoding="utf-8")
    match = re.search(r"```bash\n(.*?)```", text, re.S)
    assert match, "the README starts with a bash block"
    return [line for line in match.group(1).splitlines() if line.strip()]


def test_the_readme_opens_with_one_demo_and_one_test_command():
    demo, tests = first_code_block()
    assert demo.startswith("python3 -m venv .venv && ") and demo.endswith("gatewaytui demo")
    assert tests.startswith("python3 -m venv .venv && .venv/bin/pip install -e '.[test]' && ")


def test_ci_runs_the_readme_test_command():
    _, tests = first_code_block()
    readme_args = shlex.split(tests.rsplit("&& ", 1)[1])
    assert readme_args[0] == ".venv/bin/pytest"
    ci = (REPO / ".ci" / "run").read_text(encoding="utf-8")
    match = re.search(r"^TEST_ARGS=\((.*)\)$", ci, re.M)
    assert match, ".ci/run sets TEST_ARGS"
    assert shlex.split(match.group(1)) == readme_args[1:]
    assert '"$venv/bin/pytest" "${TEST_ARGS[@]}"' in ci
