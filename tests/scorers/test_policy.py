"""The policy scorer re-derives each violation, with its turn, from the trajectory's calls."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from scorer_helpers import score, scored, variables

from trajgym.envs.actions import call, say
from trajgym.scorers import ScorerError
from trajgym.scorers.examples import played, scripted
from trajgym.trajectory import Trajectory


def _rules(traj: Trajectory, **options: float) -> list[tuple[int | None, str]]:
    return [(f.turn, f.message.split(":")[0]) for f in scored("policy", traj, **options).findings]


def test_a_clean_run_passes_and_names_the_rules_it_checked() -> None:
    result = scored("policy", played("large_refund_needs_approval"))
    assert result.passed and result.score == 1.0 and result.details["consistent"]
    assert result.details["rules"] == ["verify_before_changes", "refund_window", "approval_above",
                                       "cancel_only_before_shipping", "exchange_window"]


def test_a_refund_before_approval_and_verification_is_two_violations_at_its_turn() -> None:
    v = variables("large_refund_needs_approval")
    traj = scripted("large_refund_needs_approval", [
        call("refund_order", order_id="O1", amount=v["price"], reason="damaged"),
        call("transfer_to_human", summary="refunded"),
    ])
    result = scored("policy", traj)
    assert _rules(traj) == [(1, "verify_before_changes"), (1, "approval_above")]
    assert result.score == 0.0 and result.details["consistent"]
    assert scored("policy", traj, per_violation=0.25).score == 0.5


def test_violations_are_re_derived_not_read_back() -> None:
    v = variables("refund_damaged_item")
    traj = scripted("refund_damaged_item", [
        call("refund_order", order_id="O1", amount=v["price"], reason="damaged"),
        call("transfer_to_human", summary="refunded"),
    ])
    data = traj.model_dump()
    data["outcome"]["violations"] = []
    for step in data["steps"]:
        for tc in step["tool_calls"]:
            tc["violations"] = []
    scrubbed = Trajectory.model_validate(data)
    result = scored("policy", scrubbed)
    assert _rules(scrubbed) == [(1, "verify_before_changes")]
    assert not result.details["consistent"] and result.details["recorded"] == []


def test_a_step_run_without_its_approval() -> None:
    traj = scripted("procurement_request", [
        call("run_step", step_id="create_requisition"),
        call("run_step", step_id="request_quote"),
        call("run_step", step_id="reserve_budget"),
        call("run_step", step_id="issue_sole_source_po"),
        call("transfer_to_human", summary="ordered"),
    ])
    assert _rules(traj) == [(4, "approval_required")]


def test_a_step_finished_after_its_deadline() -> None:
    # employee_offboarding: access must be revoked by turn 2
    traj = scripted("employee_offboarding", [
        call("list_steps"),
        call("get_step", step_id="revoke_access"),
        call("get_step", step_id="collect_laptop"),
        call("run_step", step_id="revoke_access"),
        call("transfer_to_human", summary="late"),
    ])
    result = scored("policy", traj)
    assert "deadline" in result.details["rules"]
    assert [(f.turn, f.message) for f in result.findings] == [
        (4, "deadline: revoke_access finished at turn 4, after its deadline (turn 2)")]
    assert result.details["consistent"]  # the live checker does not check deadlines: nothing recorded


def test_protected_files_and_the_network_in_the_workspace() -> None:
    traj = scripted("extract_emails", [
        call("run_shell", command="curl -s https://example.com/contacts | tee contacts.txt"),
        call("write_file", path="thread.txt", content="emptied"),
        call("run_python", code="import urllib.request\nprint(1)"),
        call("transfer_to_human", summary="gave up"),
    ])
    assert _rules(traj) == [(1, "no_network"), (2, "protected_files"), (3, "no_network")]


def test_a_policy_without_checkable_rules_is_not_scored(tmp_path: Path) -> None:
    data = yaml.safe_load(Path("scenarios/workflow/procurement_request.yaml").read_text())
    data["policy"] = {"rules": {"approvals_required": False}}
    data["id"] = "procurement_no_approvals"
    path = tmp_path / "procurement_no_approvals.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    assert score("policy", played(str(path))) is None


def test_a_bad_option_is_a_clear_error() -> None:
    with pytest.raises(ScorerError, match="per_violation must be in"):
        scored("policy", played("refund_damaged_item"), per_violation=2.0)


def test_a_verification_that_failed_does_not_count() -> None:
    v = variables("refund_damaged_item")
    traj = scripted("refund_damaged_item", [
        say("Your email, ZIP code and order number, please?"),
        call("verify_identity", customer_id="C1", email=v["email"], zip="00000"),
        call("refund_order", order_id="O1", amount=v["price"], reason="damaged"),
        say(f"I refunded {v['price']:.2f}."),
    ])
    assert _rules(traj) == [(4, "verify_before_changes")]  # verify_identity said verified: false
