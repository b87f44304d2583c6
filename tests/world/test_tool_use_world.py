"""The tool-use world: a sandboxed workspace per episode, a check after it, protected inputs."""

from __future__ import annotations

from helpers import BUILTIN

from trajgym.envs.actions import call, say
from trajgym.envs.core import Episode
from trajgym.world.loader import load
from trajgym.world.tool_use.policy import python_writes, shell_targets


def _episode(seed: int = 0) -> Episode:
    ep = Episode.start(load(BUILTIN["clean_csv"]), seed)
    ep.step("customer", say("Please clean customers.csv"))
    return ep


def test_tools_work_in_the_episode_workspace() -> None:
    ep = _episode()
    listing = ep.step("support", call("list_files"))["tool_calls"][0]["content"]
    assert "customers.csv" in listing
    ep.step("support", call("write_file", path="notes/a.txt", content="hello"))
    out = ep.step("support", call("run_shell", command="cat notes/a.txt; echo; ls notes"))["tool_calls"][0]
    assert out["ok"] and out["content"] == {"exit_code": 0, "stdout": "hello\na.txt\n", "stderr": "", "limit_hit": None}
    code = "import sys; print(sys.version_info[0]); sys.exit(3)"
    full = ep.step("support", call("run_python", code=code))["tool_calls"][0]  # clean_csv: a full disk
    assert full["error_type"] == "disk_full" and full["faults"][0]["kind"] == "disk_full"
    py = ep.step("support", call("run_python", code=code))
    assert py["tool_calls"][0]["content"]["exit_code"] == 3 and py["tool_calls"][0]["content"]["stdout"] == "3\n"


def test_paths_outside_the_workspace_are_refused() -> None:
    ep = _episode()
    for path in ("/etc/passwd", "../x", "a/../../b"):
        tc = ep.step("support", call("read_file", path=path))["tool_calls"][0]
        assert not tc["ok"] and tc["error_type"] == "permission_denied"


def test_the_check_runs_at_the_end_and_its_result_is_the_goal() -> None:
    ep = _episode()
    ep.step("support", call("write_file", path="clean.csv", content="id,name,email,city\n"))
    ep.step("support", call("transfer_to_human", summary="giving up"))
    assert ep.done and ep.state.check_result is not None and not ep.state.check_result.passed
    assert "clean.csv" in ep.state.final_files and ep.state.final_files["clean.csv"].startswith("id,")
    assert not ep.outcome["success"]
    assert ep.toolkit._sandbox is None  # closed with the episode


def test_writing_a_protected_input_is_a_violation() -> None:
    ep = _episode()
    tc = ep.step("support", call("run_shell", command="sort customers.csv -o customers.csv"))["tool_calls"][0]
    assert [v["rule"] for v in tc["violations"]] == ["protected_files"]
    tc = ep.step("support", call("run_shell", command="cp customers.csv backup.csv"))["tool_calls"][0]
    assert tc["violations"] == []


def test_shell_and_python_target_reading() -> None:
    assert shell_targets("cat x > out.txt && rm -f a.log; sed -i s/a/b/ c.txt") >= {"out.txt", "a.log", "c.txt"}
    assert shell_targets("cp in.csv out.csv") == {"out.csv"}
    assert "in.csv" not in shell_targets("wc -l in.csv | tee count.txt")
    assert python_writes("open('data.csv', 'w').write(x)", "data.csv")
    assert not python_writes("open('data.csv').read()", "data.csv")
