"""The customer-support desk, PettingZoo style.

>>> from trajgym.envs import customer_support_v0
>>> env = customer_support_v0.env(scenario="refund_damaged_item")
>>> par = customer_support_v0.parallel_env(scenario="refund_damaged_item")
"""

from trajgym.envs.modules import module_functions

DOMAIN = "customer_support"
DEFAULT_SCENARIO = "refund_damaged_item"

raw_env, env, parallel_env = module_functions(DOMAIN, DEFAULT_SCENARIO)
