"""HTTP surfaces: one package or module per vendor API we speak, plus our own public pages."""
