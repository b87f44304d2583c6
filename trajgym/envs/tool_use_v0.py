"""Tool use in a sandboxed workspace (files, shell, Python), PettingZoo style.

>>> from trajgym.envs import tool_use_v0
>>> env = tool_use_v0.env(scenario="clean_csv")
"""

from trajgym.envs.modules import module_functions

DOMAIN = "tool_use"
DEFAULT_SCENARIO = "clean_csv"

raw_env, env, parallel_env = module_functions(DOMAIN, DEFAULT_SCENARIO)
