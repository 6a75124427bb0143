"""The service as a DICOM node: storage SCP ingress (pynetdicom)."""
