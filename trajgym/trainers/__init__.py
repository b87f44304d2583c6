"""Trainers: scored trajectories become datasets (``trajgym export``) and better policies
(``trajgym train sft|dpo``, on TRL's trainers).

Needs the ``train`` extra (``make train-setup``): TRL, datasets, transformers, torch (the CPU pin first).
"""
