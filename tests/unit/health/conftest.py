from healthfx import *  # noqa: F401,F403 - fixtures live in healthfx.py (unique module name)
from healthfx import lab_dict, lab_exp, make_exp, target_facts, gpu_facts, h100_facts, real_exp, mlx5_gpu  # noqa: F401
