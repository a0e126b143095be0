# Profile driver names -> driver classes, so board profiles stay pure data.
# Modules are imported only when a profile uses them: a water probe never pays the
# RAM for the PMS or BME280 code.

# name: (module, class, default options; profile options override them)
DRIVERS = {
    "pms5003": ("pms", "PMS", {"model": "pms5003"}),
    "pms7003": ("pms", "PMS", {"model": "pms7003"}),
    "sht30": ("sensirion", "SHT3x", {}),
    "sht31": ("sensirion", "SHT3x", {}),
    "sht35": ("sensirion", "SHT3x", {}),
    "sht40": ("sensirion", "SHT4x", {}),
    "sht41": ("sensirion", "SHT4x", {}),
    "sht45": ("sensirion", "SHT4x", {}),
    "bme280": ("bme280", "BME280", {}),
    "ze03": ("winsen", "ZE", {"model": "ze03"}),
    "ze07": ("winsen", "ZE", {"model": "ze07"}),
    "ze15": ("winsen", "ZE", {"model": "ze15"}),
    "ads1115_gas": ("analog_gas", "AnalogGas", {}),
    "ezo_ph": ("ezo", "EZO", {"circuit": "ph"}),
    "ezo_do": ("ezo", "EZO", {"circuit": "do"}),
    "ezo_ec": ("ezo", "EZO", {"circuit": "ec"}),
    "ezo_orp": ("ezo", "EZO", {"circuit": "orp"}),
    "ezo_rtd": ("ezo", "EZO", {"circuit": "rtd"}),
    "turbidity": ("turbidity", "Turbidity", {}),
    "ds18b20": ("ds18b20", "DS18B20", {}),
    "modbus_sonde": ("modbus", "ModbusSonde", {}),
}

# Which bus type each module talks to (drivers_setup checks the profile against it).
BUS_TYPES = {"pms": "uart", "winsen": "uart", "modbus": "uart", "sensirion": "i2c",
             "bme280": "i2c", "analog_gas": "i2c", "ezo": "i2c", "turbidity": "adc",
             "ds18b20": "onewire"}


def driver_class(driver):
    entry = DRIVERS.get(driver)
    if entry is None:
        raise ValueError("unknown sensor driver %r (known: %s)"
                         % (driver, ", ".join(sorted(DRIVERS))))
    mod = __import__(entry[0])
    return getattr(mod, entry[1])


def bus_type(driver):
    return BUS_TYPES[DRIVERS[driver][0]] if driver in DRIVERS else None


def create(spec, bus, pin=None):
    # spec: a profile "sensors" entry {"name", "driver", "bus", "options", "use"}.
    # pin(n) makes an output Pin for options named *_pin (PMS SET, RS-485 DE).
    driver = spec.get("driver")
    cls = driver_class(driver)
    opts = dict(DRIVERS[driver][2])
    opts.update(spec.get("options") or {})
    for k in opts:
        if k.endswith("_pin") and isinstance(opts[k], int) and pin is not None:
            opts[k] = pin(opts[k])
    name = spec.get("name") or driver
    opts["name"] = name
    try:
        drv = cls(bus, **opts)
    except TypeError as e:
        raise ValueError("sensor %r (%s): bad options: %s" % (name, driver, e))
    use = spec.get("use")
    if use:
        bad = [p for p in use if p not in drv.params]
        if bad:
            raise ValueError("sensor %r: 'use' names %s, driver yields %s"
                             % (name, bad, list(drv.params)))
        drv.only = tuple(use)
        drv.params = tuple(use)
    return drv
