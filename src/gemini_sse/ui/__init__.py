"""Chat front ends that run outside the gateway: the Streamlit page (`gemini-sse ui`).

Nothing here imports Streamlit: only `streamlit_app`, which Streamlit itself runs, does.
Install it with `pip install 'gemini-sse[ui]'`.
"""
