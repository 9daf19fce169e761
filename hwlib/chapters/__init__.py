"""One module per paper: configs, stored experiments, sweeps to frames, claim readings."""
