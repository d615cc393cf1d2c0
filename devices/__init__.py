"""edgetorch.devices: delegate backends (partition.py on the export side,
backend.py on the run side), one folder per device."""
