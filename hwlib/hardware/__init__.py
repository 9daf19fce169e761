"""The device families behind one interface (:mod:`hwlib.hardware.base`), one module each:

* :mod:`~hwlib.hardware.mram`: MRAM in-memory-computing XNOR arrays (S-DDHR);
* :mod:`~hwlib.hardware.sram`: SRAM at low voltage: bit masking, erasures, the energy model
  (its compiled CPU kernels in :mod:`~hwlib.hardware.sram_kernels`);
* :mod:`~hwlib.hardware.crossbar`: analog non-volatile-memory crossbars (HA-SGD);
* :mod:`~hwlib.hardware.memristor`: two-device memristive synapses (Babu & Rajendran);
* :mod:`~hwlib.hardware.bitstream`: stochastic bit-stream arithmetic, alongside them.
"""
