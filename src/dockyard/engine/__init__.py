"""The engine: containers as named objects, their monitors, logs and state."""
