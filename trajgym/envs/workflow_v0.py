"""Business workflows (dependency graphs of steps, approvals, compensation), PettingZoo style.

>>> from trajgym.envs import workflow_v0
>>> env = workflow_v0.env(scenario="employee_onboarding")
"""

from trajgym.envs.modules import module_functions

DOMAIN = "workflow"
DEFAULT_SCENARIO = "employee_onboarding"

raw_env, env, parallel_env = module_functions(DOMAIN, DEFAULT_SCENARIO)
