"""envnet: from the sensor to the alert, for a city's air and water network."""

__version__ = "0.1.0"
