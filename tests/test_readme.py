"""The README's two opening commands are the ones CI and users run."""

import pathlib
import re

REPO = pathlib.Path(__file__).resolve().parents[1]


def _opening_commands() -> list[str]:
    text = (REPO / "README.md").read_text()
    return re.findall(r"```bash\n(.*?)\n```", text, flags=re.S)[:2]


def test_readme_opens_with_the_main_job_and_the_test_command():
    main_job, tests = _opening_commands()
    assert "pip install -e ." in main_job
    assert "python -m mde_adv.main --config configs/default.py --workdir" in main_job
    assert 'pip install -e ".[test,torch]"' in tests and "pytest" in tests


def test_ci_runs_the_readme_test_command_verbatim():
    _, tests = _opening_commands()
    ci_lines = (REPO / ".ci" / "run").read_text().splitlines()
    assert tests in ci_lines, f"{tests!r} is not a line of .ci/run"


def test_torch_is_pinned_exactly_where_the_extra_is_declared():
    setup = (REPO / "setup.cfg").read_text()
    torch_lines = [ln.strip() for ln in setup.splitlines() if ln.strip().startswith("torch")]
    assert torch_lines == ["torch==2.13.0"], torch_lines
