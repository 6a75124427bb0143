"""The service as a DICOM node (pynetdicom): storage SCP ingress, routing rules, push
delivery, collection from PACS sources and Query/Retrieve of the store."""
