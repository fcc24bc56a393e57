"""Safar's Streamlit dashboards (run ``streamlit run dashboards/streamlit_app.py``)."""
