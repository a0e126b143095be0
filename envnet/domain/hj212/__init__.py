"""HJ 212-2017 uplink: packet codec, pollutant codes, the uplink process and a test platform."""
