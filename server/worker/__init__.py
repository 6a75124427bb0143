"""What runs inside a Dask worker: the task functions that load inputs, run the kernels
and write results; slab execution; the fake GPU used where no device exists."""
