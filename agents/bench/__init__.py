"""Measurements of speed and cost: `mtdqn bench` (benchmark.py, on timing.py), the update's cost per
variant (update_cost.py), the Ray backend's rates (ray_bench.py) and the SB3 DQN baseline (baseline.py)."""
