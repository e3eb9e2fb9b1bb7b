"""The agent, in rooms by what they hold (docs/architecture.md draws them and what each may import):

- core/: the learning core, one transition from the actor to the TD loss: torso, network, replay,
  augmentation, learner, actor, evaluation, checkpoints, tracking.
- multitask/: the toolkit: ways to share (sharing.py, gates.py) and to balance (balance.py) that the
  core is built from, and the instruments that measure and choose (conflict, structure, grouping).
- training/: a run: its options (config, validate, presets), what they build, and the loop that
  trains, evaluates, checkpoints and resumes.
- distributed/: the same run with its actors on Ray.
- bench/: speed and cost measurements (`mtdqn bench`, update cost, the SB3 baseline).
- studies/: reading runs: comparisons and the published references.
"""
