"""The same run with its actors on Ray (`mtdqn train --backend ray`): the learner stays in this process."""
