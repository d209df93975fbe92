from healthfx import gpu1_facts, gpu2_facts, lab_dict, lab_exp, make_exp, mlx5_gpu, real_exp, tgt1_facts  # noqa: F401
