"""Jobs: the job state machine, the job catalog, running a Process, Submit, batch,
routing-rule or reuse job through its phases, and the usage record of a job."""
