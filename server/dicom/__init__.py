"""DICOM files: reading headers and pixels into volumes, writing derived objects, UID and
date helpers, JPEG 2000 encoding. No network code (that is dicomnet/)."""
