"""Safar dashboards: the entry point that lays out navigation; pages live in ``app_pages/``.

Run from the repository root::

    SAFAR_HOME=data streamlit run dashboards/streamlit_app.py
"""

import streamlit as st

st.set_page_config(page_title="Safar", page_icon=":material/route:", layout="wide")

pages = [
    st.Page("app_pages/overview.py", title="Overview", icon=":material/dashboard:", default=True),
    st.Page("app_pages/live.py", title="Live", icon=":material/sensors:"),
    st.Page("app_pages/funnels.py", title="Funnels", icon=":material/filter_alt:"),
    st.Page("app_pages/retention.py", title="Retention", icon=":material/grid_on:"),
    st.Page("app_pages/trends.py", title="Events & Trends", icon=":material/show_chart:"),
]
engage = [
    st.Page("app_pages/segments.py", title="Segments", icon=":material/groups:"),
    st.Page("app_pages/segments_sql.py", title="SQL segment", icon=":material/code:"),
    st.Page("app_pages/segments_builder.py", title="Segment builder", icon=":material/tune:"),
    st.Page("app_pages/segments_upload.py", title="Upload a list", icon=":material/upload_file:"),
    st.Page("app_pages/messages.py", title="Messages", icon=":material/outgoing_mail:"),
    st.Page("app_pages/message_preview.py", title="Message preview", icon=":material/preview:"),
    st.Page(
        "app_pages/delivery_settings.py",
        title="Delivery settings",
        icon=":material/settings_suggest:",
    ),
]
settings = [
    st.Page("app_pages/install.py", title="Install", icon=":material/integration_instructions:"),
]

st.sidebar.title("Safar")
st.sidebar.caption("Customer engagement, from the warehouse")
# Every page stays listed: Engage alone has seven, and folding them hides the newest ones.
st.navigation({"Insights": pages, "Engage": engage, "Settings": settings}, expanded=True).run()
