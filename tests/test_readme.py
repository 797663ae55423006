"""The README's two opening commands are the ones CI and users run."""

import configparser
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


def test_torch_is_only_in_its_extra_and_pinned_exactly():
    """Any other spelling than torch==2.13.0 pulls gigabytes of CUDA packages."""
    setup = configparser.ConfigParser()
    setup.read(REPO / "setup.cfg")
    extras = setup["options.extras_require"]
    requirement_lists = {
        "install_requires": setup["options"]["install_requires"],
        **{f"extra {name}": value for name, value in extras.items()},
    }
    mentions = {
        where: [r.strip() for r in value.splitlines() if r.strip().lower().startswith("torch")]
        for where, value in requirement_lists.items()
    }
    assert {w: m for w, m in mentions.items() if m} == {"extra torch": ["torch==2.13.0"]}
