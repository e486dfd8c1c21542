"""The bundle on disk: manifest (validated on read), model check."""
