"""Results comparison and rendering (no TensorFlow here)."""
