"""The learning core: the one-transition path actor -> replay -> learner -> network, and what a run
needs around it (evaluation, checkpoints, tracking). It knows nothing of the CLI, Ray, SB3, or the
toolkit's analyses; of the toolkit it uses only the mechanisms a network and a loss are built from
(multitask.sharing, multitask.gates, multitask.balance)."""
