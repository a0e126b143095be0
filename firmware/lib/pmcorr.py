# EPA 2021 correction of Plantower PM2.5 for humidity (Barkjohn et al., the
# piecewise formula AirGradient uses). pm: PMS "atm" PM2.5 in ug/m3, rh in %.
def epa2021(pm, rh):
    if pm < 30:
        v = 0.524 * pm - 0.0862 * rh + 5.75
    elif pm < 50:
        w = pm / 20 - 1.5
        v = (0.786 * w + 0.524 * (1 - w)) * pm - 0.0862 * rh + 5.75
    elif pm < 210:
        v = 0.786 * pm - 0.0862 * rh + 5.75
    elif pm < 260:
        w = pm / 50 - 4.2
        v = ((0.69 * w + 0.786 * (1 - w)) * pm - 0.0862 * rh * (1 - w)
             + 2.966 * w + 5.75 * (1 - w) + 8.84e-4 * pm * pm * w)
    else:
        v = 2.966 + 0.69 * pm + 8.84e-4 * pm * pm
    return v if v > 0 else 0.0
