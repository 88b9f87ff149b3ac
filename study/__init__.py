"""The study: counterbalancing, storage, the Gradio app and the analysis."""
