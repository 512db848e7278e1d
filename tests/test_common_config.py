"""common.config: run folders, resume checks and the note on settings that change the random stream."""

import json

import pytest

from common.config import CONFIG_FILE, config_differences, prepare_run_dir
from common.errors import UsageError


def test_new_folder_gets_its_config_and_a_resume_accepts_safe_changes(tmp_path):
    run_dir, resuming = prepare_run_dir(tmp_path / "run", {"lr": 1e-3, "gpu": "0"})
    assert not resuming and json.loads((run_dir / CONFIG_FILE).read_text()) == {"lr": 1e-3, "gpu": "0"}
    _, resuming = prepare_run_dir(run_dir, {"lr": 1e-3, "gpu": "0,1"})  # devices may change between sittings
    assert resuming


def test_a_changed_setting_is_refused_and_nothing_is_written(tmp_path):
    run_dir, _ = prepare_run_dir(tmp_path / "run", {"lr": 1e-3})
    before = (run_dir / CONFIG_FILE).read_text()
    with pytest.raises(UsageError, match=r"different configuration \(lr: 0.001 -> 0.002\)"):
        prepare_run_dir(run_dir, {"lr": 2e-3})
    assert (run_dir / CONFIG_FILE).read_text() == before


def test_added_settings_compare_as_their_old_behaviour():
    assert config_differences({"lr": 1}, {"lr": 1, "fix": False}, added={"fix": False}) == []
    assert config_differences({"lr": 1}, {"lr": 1, "fix": True}, added={"fix": False}) == ["fix: False -> True"]


def test_switching_jit_compile_on_resume_is_allowed_with_a_note(tmp_path, capsys):
    run_dir, _ = prepare_run_dir(tmp_path / "run", {"lr": 1e-3, "jit_compile": False})
    capsys.readouterr()
    _, resuming = prepare_run_dir(run_dir, {"lr": 1e-3, "jit_compile": True})
    err = capsys.readouterr().err
    assert resuming and "jit_compile was False" in err and "random numbers" in err
    prepare_run_dir(run_dir, {"lr": 1e-3, "jit_compile": False})
    assert capsys.readouterr().err == ""
