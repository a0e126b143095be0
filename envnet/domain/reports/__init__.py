"""The bureau's reports: daily AQI bulletin, period reports (good-days ratio, statistics,
district ranking, river sections), plan targets and data completeness. See docs/reports.md."""
