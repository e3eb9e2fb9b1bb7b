"""Networks, replay, learning, acting, evaluation and the training loop."""
