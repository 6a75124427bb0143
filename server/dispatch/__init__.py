"""Dispatch: the one module that owns the distributed.Client (placement on GPU or CPU
workers, batching, slabs, fallback), and the embedded Dask cluster it may start."""
