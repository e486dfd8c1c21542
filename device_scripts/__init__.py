"""Standalone scripts copied to and run on the device (numpy + one interpreter, OpenCV for cameras)."""
