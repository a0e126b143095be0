"""The gateway: MQTT in, validated, buffered durably, out to InfluxDB and the state store."""
