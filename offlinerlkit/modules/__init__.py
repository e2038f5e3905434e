"""Networks assembled into actors and critics."""
