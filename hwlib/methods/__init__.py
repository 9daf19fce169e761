"""Training methods that compose with any model and any hardware model, the one training loop,
evaluation on chips, and the curvature of a trained network."""
