"""Reading finished runs: comparisons between runs (compare.py) and against published agents
(reproduction.py)."""
