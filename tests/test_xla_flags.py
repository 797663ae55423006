"""config.xla_flags: flags this XLA knows are appended, unknown ones dropped (XLA would abort)."""

import main_job

from mde_adv import xla_flags

UNKNOWN = "--xla_mde_adv_no_such_flag=1"


def test_unknown_flags_are_found_by_a_probe_and_known_ones_kept():
    known = xla_flags.FAST_COMPILE[0]
    merged, dropped = xla_flags.merge("--xla_force_host_platform_device_count=3", [known, UNKNOWN])
    assert dropped == [UNKNOWN]
    assert merged.split() == ["--xla_force_host_platform_device_count=3", known]


def test_a_flag_already_set_keeps_its_value_and_is_not_probed(monkeypatch):
    def no_probe(flags):
        assert not flags, f"probed {flags}"
        return []

    monkeypatch.setattr(xla_flags, "unknown_flags", no_probe)
    current = "--xla_backend_optimization_level=2 --xla_cpu_use_xnnpack=true"
    extra = (xla_flags.FAST_COMPILE[0], "--xla_cpu_use_xnnpack=false")
    assert xla_flags.merge(current, extra) == (current, [])


def test_a_bad_value_stops_the_main_job_with_xlas_reason_and_the_config_field(tmp_path):
    bad = "--xla_cpu_enable_fast_math=maybe"
    done = main_job.run("configs/smoke.py", tmp_path, f"--config.xla_flags={bad}", timeout=300)
    assert done.returncode != 0
    last = done.stderr.strip().splitlines()[-1]
    assert f"config.xla_flags='{bad}'" in last and "Couldn't interpret value maybe" in last, last
    assert not list(tmp_path.iterdir()), "nothing is written before the flags are checked"
