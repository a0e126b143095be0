# Board profile (hardware/boards/*.json) -> buses -> driver objects, for board.py on
# the ESP32. Everything comes from the profile: pins, bus numbers, addresses, which
# sensors, their options and which sensor feeds another's compensation ("links").
#
# A sensor whose bus cannot be brought up does not stop the station: it becomes a
# Missing sensor whose read() raises, so its params are published flagged "fault"
# and health counts the errors. A profile mistake (unknown driver, bad option) is a
# ValueError at boot: CI builds every profile, so that never reaches the field.
import sensorbase as sb
import registry


class Missing(sb.Sensor):
    def __init__(self, name, params, why):
        self.name = name
        self.params = tuple(params)
        self.why = why

    def measure(self):
        raise self.err(sb.SensorError, "not available: %s" % self.why)


def build_bus(spec, machine):
    # UNTESTABLE HERE: the real ESP32 constructors. Tests pass the fake machine,
    # which accepts the same keywords; pin/bus conflicts only show on a board.
    t = spec.get("type")
    if t == "uart":
        # timeout=0: drivers poll with their own deadlines; a big rxbuf holds the
        # PMS's unsolicited frames between reads.
        return machine.UART(spec["id"], baudrate=spec.get("baudrate", 9600), tx=spec["tx"],
                            rx=spec["rx"], timeout=spec.get("timeout", 0),
                            rxbuf=spec.get("rxbuf", 256))
    if t == "i2c":
        cls = machine.SoftI2C if spec.get("soft") else machine.I2C
        kw = {"scl": machine.Pin(spec["scl"]), "sda": machine.Pin(spec["sda"]),
              "freq": spec.get("freq", 100000)}
        return cls(**kw) if spec.get("soft") else cls(spec.get("id", 0), **kw)
    if t == "adc":
        adc = machine.ADC(machine.Pin(spec["pin"]))
        atten = {"0db": "ATTN_0DB", "2.5db": "ATTN_2_5DB", "6db": "ATTN_6DB",
                 "11db": "ATTN_11DB"}.get(spec.get("atten", "11db"))
        if atten and hasattr(machine.ADC, atten):
            adc.atten(getattr(machine.ADC, atten))  # 11 dB: ~0.15-2.45 V linear range
        return adc
    if t == "onewire":
        import onewire
        return onewire.OneWire(machine.Pin(spec["pin"]))
    raise ValueError("bus type %r (uart, i2c, adc, onewire)" % t)


def sensor_power(profile, machine, on=True):
    # Battery probes switch all sensor supplies through one load switch (pulled off
    # in hardware, so deep sleep cuts it without firmware help). Switching off right
    # after the last sample, before Wi-Fi/MQTT, saves ~30 % (hardware/README.md).
    power = profile.get("power") or {}
    p = power.get("sensor_power_pin")
    if p is None:
        return False
    machine.Pin(p, machine.Pin.OUT, value=1 if on else 0)
    if on:
        sb.sleep_ms(power.get("sensor_settle_ms", 0))
    return True


def _params_of(spec, cls):
    # What a sensor would have measured, so a missing one is flagged per param.
    o = spec.get("options") or {}
    return (spec.get("use") or getattr(cls, "params", None) or list(o.get("registers") or ())
            or [o.get("gas") or {"rtd": "t"}.get(registry.DRIVERS[spec["driver"]][2].get(
                "circuit"), registry.DRIVERS[spec["driver"]][2].get("circuit", "?"))])


def make(profile, machine):
    if profile.get("simulated"):
        raise ValueError("profile %r is simulated: it runs on the simulated board "
                         "(firmware/sim), not on an ESP32" % profile.get("profile"))
    buses_spec = profile.get("buses") or {}
    buses = {}
    sensors = []
    byname = {}

    def pin(n):
        return machine.Pin(n, machine.Pin.OUT, value=0)

    sensor_power(profile, machine)
    for spec in profile.get("sensors") or ():
        if spec.get("enabled") is False:
            continue  # fitted on some units only (e.g. the RS-485 sonde)
        name = spec.get("name") or spec.get("driver")
        driver = spec.get("driver")
        if name in byname:
            raise ValueError("profile: two sensors named %r" % name)
        cls = registry.driver_class(driver)
        bname = spec.get("bus")
        bspec = buses_spec.get(bname)
        if bspec is None:
            raise ValueError("sensor %r: bus %r is not in the profile's buses" % (name, bname))
        if bspec.get("type") != registry.bus_type(driver):
            raise ValueError("sensor %r: %s needs a %s bus, %r is %s" % (
                name, driver, registry.bus_type(driver), bname, bspec.get("type")))
        try:
            if bname not in buses:
                buses[bname] = build_bus(bspec, machine)
            drv = registry.create(spec, buses[bname], pin)
        except OSError as e:
            drv = Missing(name, _params_of(spec, cls), e)
        sensors.append(drv)
        byname[name] = drv
    link(profile, byname)
    return sensors


def link(profile, byname):
    # "links": {"t": "water-temp"} -> the driver reads t from that sensor's last value.
    # Sensors are read in profile order, so a source listed earlier is fresh.
    for spec in profile.get("sensors") or ():
        links = spec.get("links")
        if not links or spec.get("enabled") is False:
            continue
        drv = byname[spec.get("name") or spec.get("driver")]
        drv.links = {}
        for param, src in links.items():
            if src not in byname:
                raise ValueError("sensor %r: links %s to unknown sensor %r"
                                 % (drv.name, param, src))
            if param not in byname[src].params:
                raise ValueError("sensor %r: %r does not measure %s" % (drv.name, src, param))
            drv.links[param] = byname[src]
