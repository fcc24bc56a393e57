"""Analytics: funnel (and later retention, trends) specs, event logs and engines."""
