"""Training methods that compose with any model and any hardware model, the one training loop,
evaluation on chips, and the curvature of a trained network; beside them, bit-stream training
(:mod:`~hwlib.methods.bitstream_training`), a specialised consumer of the memristive write
model with its own compiled path (:mod:`~hwlib.methods.bitstream_kernels`)."""
