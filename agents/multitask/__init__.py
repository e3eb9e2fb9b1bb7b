"""The multi-task toolkit. Mechanisms (imported by the core, importing nothing of the agent): sharing
modes (sharing.py), learned sharing's gates (gates.py), loss balancers (balance.py). Instruments (used
by a run or a command, never by the core): gradient conflict and affinity (conflict.py), the learned
structure (structure.py), and the choice of groups (grouping.py)."""
