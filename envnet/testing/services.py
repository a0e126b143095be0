from envnet.services import InfluxDB, Mosquitto, ServiceError, free_port  # noqa: F401
