"""The software registry: processing packages registered by publishers, approved or
retired by administrators, run as pipeline operations, delivered and metered."""
