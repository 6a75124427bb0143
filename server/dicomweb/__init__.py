"""The HTTP door: DICOMweb (QIDO-RS, WADO-RS, STOW-RS) over the store, on
``serve --http-port``, with the API keys, roles and subscriber isolation of the gRPC door
(api/). It calls the same services the gRPC servicers call; no gRPC here."""
