# Mixing ratio (ppm/ppb) -> mass concentration in envnet units: co in mg/m3, the
# other gases in ug/m3. GB 3095-2012 (Amendment 1, 2018) states gaseous pollutants at
# the reference state 298.15 K, 101.325 kPa, where one mole of ideal gas takes
# R*T/p = 8.314462618 * 298.15 / 101.325 = 24.465 L (the often-quoted 24.45 is a
# rounding). mg/m3 = ppm * M / Vm, and ug/m3 = ppb * M / Vm.
MOLAR_VOLUME = 8.314462618 * 298.15 / 101.325  # L/mol

MOLAR_MASS = {  # g/mol
    "co": 28.010,
    "no2": 46.006,
    "so2": 64.064,
    "o3": 47.997,
    "nh3": 17.031,
    "h2s": 34.081,
}


def to_mass(gas, value, unit):
    # -> mg/m3 for co, ug/m3 otherwise. `unit` is what the sensor reports.
    m = MOLAR_MASS.get(gas)
    if m is None:
        raise ValueError("gas: unknown gas %r" % gas)
    if unit == "ppm":
        ug = value * 1000 * m / MOLAR_VOLUME
    elif unit == "ppb":
        ug = value * m / MOLAR_VOLUME
    elif unit == "ug/m3":
        ug = value
    elif unit == "mg/m3":
        ug = value * 1000
    else:
        raise ValueError("gas: unit must be ppm, ppb, ug/m3 or mg/m3, not %r" % unit)
    return ug / 1000 if gas == "co" else ug


def to_ppb(gas, mass):
    # Inverse of to_mass(gas, ., "ppb"): envnet units -> ppb (for cross-sensitivity).
    ug = mass * 1000 if gas == "co" else mass
    return ug * MOLAR_VOLUME / MOLAR_MASS[gas]
