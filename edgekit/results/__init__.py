"""History (SQLite store), comparison and reports. Never imports TensorFlow."""
